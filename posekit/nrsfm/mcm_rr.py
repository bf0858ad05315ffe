"""MCM-RR: CRA with elastic-net bases and a similarity constraint, and the two ablations.

The penalised least squares of the MCM-RR article (Eq. 10) adds beta/2 ||Z D||^2 to CRA's convex
program, D = diag(d_1..d_K) (x) I_3 (Eq. 11). Its Z step (Eq. 17) then solves
(B~ B~^T + mu I + beta D D^T); the closed form is the derivative of the squared Frobenius norm, so
||Z D||_2^2 is read as beta/2 sum_i d_i^2 ||Z_i||_F^2, a per-basis ridge that is heavier for bases
unlike the observation. Everything else is CRA's ALM and refinement (:mod:`posekit.nrsfm.cra`).

The similarity weight (Eq. 12) is d_i = exp(||W - Pi B_i|| / (2 gamma^2)), printed with a
positive exponent and an unsquared norm; both are kept (a dissimilar basis gets a larger weight,
which is what a similarity prior needs). Comparing W with Pi B_i, the x-y rows of B_i, presumes
that the camera looks along the bases' z axis at their scale, which no unknown viewpoint
satisfies. The distance used here is the same comparison freed of the camera that Eq. 2 models:
the residual of W after its best fit by any 2 x 3 linear map of B_i (the relaxed, affine camera),
relative to ||W||. It lies in [0, 1], so d_i stays in [1, exp(1 / (2 gamma^2))], and it is
computed on the visible points only.

Methods (:data:`METHODS`):

=========  ===================  ===================
method     bases                similarity term
=========  ===================  ===================
cra        sparse coding        no
cra-en     elastic net          no
cra-sc     sparse coding        yes
mcm-rr     elastic net          yes
=========  ===================  ===================
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from posekit.errors import PosekitError
from posekit.nrsfm.bases import CODINGS, ShapeBases
from posekit.nrsfm.cra import Reconstruction, solve

METHODS = ("cra", "cra-en", "cra-sc", "mcm-rr")
BASES_FOR_METHOD = {"cra": "sparse-coding", "cra-sc": "sparse-coding",
                    "cra-en": "elastic-net", "mcm-rr": "elastic-net"}
FITTING_METHOD = {"sparse-coding": "cra", "elastic-net": "mcm-rr"}
_DEFAULTS = Path(__file__).with_name("defaults.yaml")


@lru_cache(maxsize=1)
def _defaults_file() -> dict:
    return yaml.safe_load(_DEFAULTS.read_text())


def load_defaults() -> dict:
    """The whole ``defaults.yaml`` (solver, bases, benchmark, the article's tables), a deep copy."""
    return copy.deepcopy(_defaults_file())


def default_parameters(method: str) -> dict:
    """Solver hyper-parameters of ``method`` from ``defaults.yaml`` (a fresh copy)."""
    if method not in METHODS:
        raise PosekitError(f"unknown NRSfM method {method!r}; choose one of {', '.join(METHODS)}")
    table = _defaults_file()["solver"]
    return {**table["common"], **table[method]}


def default_bases_parameters(coding: str) -> dict:
    """Basis-learning hyper-parameters for "sparse-coding" or "elastic-net" (a fresh copy)."""
    if coding not in CODINGS:
        raise PosekitError(f"unknown basis coding {coding!r}; choose one of {', '.join(CODINGS)}")
    table = _defaults_file()["bases"]
    return {**table["common"], **table[coding]}


def similarity_distances(W, B, C=None) -> np.ndarray:
    """rho_i (F, K): ||W - W P_i|| / ||W||, P_i the projector onto the row space of basis i on the
    frame's visible points (its best affine-camera fit). W (F, 2, P); B (3K, P) centred stacked
    bases; C (F, P, P) or None, the visibility projectors of :func:`~posekit.nrsfm.cra.centring_matrices`."""
    k, num_points = B.shape[0] // 3, B.shape[1]
    per_basis = B.reshape(k, 3, num_points)
    if C is not None:
        per_basis = per_basis[None] @ C[:, None]
    _, sv, vt = np.linalg.svd(per_basis, full_matrices=False)
    vt = vt * (sv > 1e-10 * sv[..., :1])[..., None]
    if C is None:
        fitted = np.einsum("fdp,krp,krq->fkdq", W, vt, vt, optimize=True)
    else:
        fitted = np.einsum("fdp,fkrp,fkrq->fkdq", W, vt, vt, optimize=True)
    residual = np.linalg.norm(W[:, None] - fitted, axis=(2, 3))
    return residual / np.maximum(np.linalg.norm(W, axis=(1, 2)), 1e-300)[:, None]


def similarity_weights(W, B, C=None, *, gamma: float) -> np.ndarray:
    """Eq. 12: d_i = exp(rho_i / (2 gamma^2)), (F, K)."""
    if not gamma > 0:
        raise PosekitError(f"gamma must be > 0, got {gamma!r}")
    return np.exp(similarity_distances(W, B, C) / (2.0 * gamma ** 2))


def _check_parameters(params: dict, method: str) -> dict:
    known = set(default_parameters(method))
    unknown = sorted(set(params) - known)
    if unknown:
        raise PosekitError(f"unknown parameter(s) for {method}: {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")
    merged = {**default_parameters(method), **params}
    for name, value in merged.items():
        if name == "refine":
            continue
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise PosekitError(f"parameter {name} of {method} must be a finite number >= 0, "
                               f"got {value!r}")
    return merged


def reconstruct(keypoints, bases: ShapeBases, method: str = "mcm-rr", *, visibility=None,
                check_bases: bool = True, **params) -> Reconstruction:
    """3D shapes (camera frame) from 2D keypoints (F, P, 2) with one of :data:`METHODS`.

    params override ``defaults.yaml`` (alpha, beta, gamma, tol, max_iter, refine, refine_iter).
    ``check_bases`` refuses bases of the other coding (e.g. MCM-RR with sparse-coding bases, which
    is CRA-SC).
    """
    if method not in METHODS:
        raise PosekitError(f"unknown NRSfM method {method!r}; choose one of {', '.join(METHODS)}")
    if check_bases and bases.coding != BASES_FOR_METHOD[method]:
        same = [m for m in METHODS if BASES_FOR_METHOD[m] == bases.coding]
        raise PosekitError(f"method {method} needs {BASES_FOR_METHOD[method]} bases (fit-bases "
                           f"--method {FITTING_METHOD[BASES_FOR_METHOD[method]]}); these bases are "
                           f"{bases.coding}: use --method {' or '.join(same)}")
    p = _check_parameters(params, method)
    ridge_fn = None
    if method in ("cra-sc", "mcm-rr") and p["beta"] > 0:
        beta, gamma = float(p["beta"]), float(p["gamma"])

        def ridge_fn(obs, B, C):
            return beta * similarity_weights(obs.W, B, C, gamma=gamma) ** 2

    return solve(keypoints, bases, alpha=float(p["alpha"]), ridge_fn=ridge_fn,
                 visibility=visibility, refine=p["refine"], tol=float(p["tol"]),
                 max_iter=int(p["max_iter"]), refine_iter=int(p["refine_iter"]), method=method)


def reconstruct_mcm_rr(keypoints, bases: ShapeBases, *, visibility=None, **params) -> Reconstruction:
    """MCM-RR (Algorithm 1): elastic-net bases, similarity constraint, ALM, refinement."""
    return reconstruct(keypoints, bases, "mcm-rr", visibility=visibility, **params)


__all__ = ["METHODS", "BASES_FOR_METHOD", "load_defaults", "default_parameters",
           "default_bases_parameters", "similarity_distances", "similarity_weights", "reconstruct",
           "reconstruct_mcm_rr"]
