"""Shape bases for NRSfM: dictionaries of 3D shapes learned from motion capture.

Both learners solve the dictionary problem of the MCM-RR article's Eq. 5 by alternating one
proximal-gradient step on the codes X with one projected-gradient step on the dictionary N::

    min_{N, X}  1/2 ||A - N X||_F^2 + lam (tau ||X||_1 + (1 - tau) ||X||_F^2)
    s.t.        ||N_i||_2 <= 1   (and X >= 0 for the elastic net)

A (3P x F) holds one training shape per column, points major (x1, y1, z1, x2, ...); column N_i
re-arranged to (P, 3) is basis B_i.

* :func:`learn_elastic_net_bases` is MCM-RR's model (tau < 1, X >= 0). Eqs. 6-7 as printed have the
  wrong sign (they ascend the data term) and an undefined "K x F identity": the gradient used here
  is -N^T (A - N X) + 2 lam (1 - tau) X, the l1 term and X >= 0 enter through their proximal step
  max(X - step * lam * tau, 0) (the l1 subgradient of a non-negative X is the all-ones matrix), and
  ||X||_2^2 is read as the squared Frobenius norm, as the printed gradient 2 (1 - tau) X implies.
* :func:`learn_sparse_coding_bases` is CRA's plain sparse coding (tau = 1, signed codes).

Step sizes (phi_1, phi_2 of Eqs. 8-9, not given by the article) are the inverse Lipschitz
constants, 1 / (||N||_2^2 + 2 lam (1 - tau)) and 1 / ||X X^T||_2, so every step lowers the
objective. The article does not say how training shapes are prepared; a dictionary of unaligned
shapes would spend atoms on viewpoint, which the solvers model separately, so
:func:`normalize_training_shapes` centres each shape, scales it to unit Frobenius norm and rotates
it onto the mean shape (generalised Procrustes, rotations only).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from posekit.errors import PosekitError
from posekit.geometry.procrustes import similarity_procrustes

CODINGS = ("sparse-coding", "elastic-net")


def _check_shapes(shapes, where: str) -> np.ndarray:
    arr = np.asarray(shapes, dtype=float)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] < 1 or arr.shape[1] < 3:
        raise PosekitError(f"{where}: expected 3D shapes (F, P, 3) with P >= 3 points, "
                           f"got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=(1, 2)))[0])
        raise PosekitError(f"{where}: shape {bad} has NaN or infinite coordinates")
    return arr


def normalize_training_shapes(shapes, *, rounds: int = 5) -> np.ndarray:
    """Training shapes (F, P, 3) made comparable: centred, unit Frobenius norm, and rotated onto
    their mean shape by generalised Procrustes (rotation only, no reflection)."""
    s = _check_shapes(shapes, "normalize_training_shapes")
    s = s - s.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(s, axis=(1, 2))
    if np.any(norms <= 1e-12 * max(norms.max(), 1e-300)):
        bad = int(np.flatnonzero(norms <= 1e-12 * max(norms.max(), 1e-300))[0])
        raise PosekitError(f"normalize_training_shapes: shape {bad} has all points at one location")
    s = s / norms[:, None, None]
    reference = s[0]
    for _ in range(rounds):
        s = similarity_procrustes(s, np.broadcast_to(reference, s.shape), scale=False)[0]
        s = s - s.mean(axis=1, keepdims=True)
        reference = s.mean(axis=0)
        reference = reference / np.linalg.norm(reference)
    return s


@dataclass
class ShapeBases:
    """K shape bases (K, P, 3) and how they were learned.

    coding      "sparse-coding" (CRA) or "elastic-net" (MCM-RR): the solvers check that a method is
                given the bases it was designed for
    params      the learning hyper-parameters (k, lam, tau, iterations, seed, training frames)
    joint_names optional names of the P points, carried into reconstructions
    """

    bases: np.ndarray
    coding: str
    params: dict = field(default_factory=dict)
    joint_names: tuple[str, ...] | None = None

    def __post_init__(self):
        self.bases = _check_shapes(self.bases, "ShapeBases.bases")
        if self.coding not in CODINGS:
            raise PosekitError(f"ShapeBases.coding must be one of {CODINGS}, got {self.coding!r}")
        if self.joint_names is not None:
            self.joint_names = tuple(str(n) for n in self.joint_names)
            if len(self.joint_names) != self.num_points:
                raise PosekitError(f"ShapeBases: {len(self.joint_names)} joint names for "
                                   f"{self.num_points} points")

    @property
    def num_bases(self) -> int:
        return self.bases.shape[0]

    @property
    def num_points(self) -> int:
        return self.bases.shape[1]

    @property
    def stacked(self) -> np.ndarray:
        """The article's B~ (3K x P): B_1 (3 x P) on top of B_2 ... on top of B_K."""
        return self.bases.transpose(0, 2, 1).reshape(3 * self.num_bases, self.num_points)

    def save(self, path) -> None:
        arrays = {"bases": self.bases, "coding": np.array(self.coding),
                  "params": np.array(json.dumps(self.params, sort_keys=True))}
        if self.joint_names is not None:
            arrays["joint_names"] = np.array(self.joint_names)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path) -> "ShapeBases":
        from posekit.io.arrays import read_npz_array

        path = Path(path)
        bases = read_npz_array(path, "bases", ndim=3, last_dim=3)
        with np.load(path, allow_pickle=False) as archive:
            try:
                coding = str(archive["coding"]) if "coding" in archive.files else None
                params = json.loads(str(archive["params"])) if "params" in archive.files else {}
                names = archive["joint_names"].tolist() if "joint_names" in archive.files else None
            except (ValueError, json.JSONDecodeError):
                raise PosekitError(f"{path}: unreadable 'coding', 'params' or 'joint_names' "
                                   "(expected strings written by ShapeBases.save)") from None
        if coding not in CODINGS:
            raise PosekitError(f"{path}: 'coding' must be one of {CODINGS}, got {coding!r}")
        if not isinstance(params, dict):
            raise PosekitError(f"{path}: 'params' must be a JSON object")
        try:
            return cls(bases, coding, params, names)
        except PosekitError as exc:
            raise PosekitError(f"{path}: {exc}") from None


def _objective(A, N, X, lam, tau) -> float:
    residual = A - N @ X
    return float(0.5 * np.sum(residual ** 2)
                 + lam * (tau * np.abs(X).sum() + (1 - tau) * np.sum(X ** 2)))


# Small matrix products: one BLAS thread is faster than several fighting over shared cores
# (the quick benchmark took 7.5 min with default threading against 37 s with one thread).
@threadpool_limits.wrap(limits=1, user_api="blas")
def learn_bases(shapes, k: int, *, lam: float, tau: float = 1.0, nonnegative: bool = False,
                n_iter: int = 500, tol: float = 1e-6, seed: int = 0,
                normalize: bool = True) -> ShapeBases:
    """Dictionary learning of Eq. 5 by alternating proximal/projected gradient steps (Eqs. 8-9).

    shapes (F, P, 3) training shapes (``normalize=True`` runs :func:`normalize_training_shapes`);
    k atoms, initialised with k distinct training shapes drawn with ``seed``; codes start at 0.
    Stops after ``n_iter`` iterations or when the objective changes by less than ``tol``
    (relative) over 10 iterations. ``nonnegative`` with ``tau < 1`` is MCM-RR's elastic net.
    """
    s = normalize_training_shapes(shapes) if normalize else _check_shapes(shapes, "learn_bases")
    num_frames, num_points = s.shape[:2]
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= num_frames):
        raise PosekitError(f"learn_bases: k must be an integer in 1..{num_frames} (the number of "
                           f"training shapes), got {k!r}")
    if not (np.isfinite(lam) and lam >= 0):
        raise PosekitError(f"learn_bases: lam must be >= 0, got {lam!r}")
    if not (0 <= tau <= 1):
        raise PosekitError(f"learn_bases: tau must be in [0, 1], got {tau!r}")
    A = s.reshape(num_frames, 3 * num_points).T
    rng = np.random.default_rng(seed)
    N = A[:, rng.choice(num_frames, size=k, replace=False)].copy()
    N /= np.maximum(np.linalg.norm(N, axis=0), 1.0)
    X = np.zeros((k, num_frames))
    ridge = 2.0 * lam * (1.0 - tau)
    previous = _objective(A, N, X, lam, tau)
    iterations = 0
    for iterations in range(1, n_iter + 1):
        # Eq. 8, sign corrected, then the proximal step of the l1 term (and X >= 0).
        step_x = 1.0 / (np.linalg.norm(N, 2) ** 2 + ridge)
        X = X - step_x * (N.T @ (N @ X - A) + ridge * X)
        threshold = step_x * lam * tau
        X = np.maximum(X - threshold, 0.0) if nonnegative else \
            np.sign(X) * np.maximum(np.abs(X) - threshold, 0.0)
        # Eq. 9, sign corrected, then the projection onto ||N_i|| <= 1.
        gram = X @ X.T
        lipschitz = np.linalg.norm(gram, 2)
        if lipschitz > 0:
            N = N - (N @ gram - A @ X.T) / lipschitz
            N /= np.maximum(np.linalg.norm(N, axis=0), 1.0)
        if iterations % 10 == 0:
            current = _objective(A, N, X, lam, tau)
            if abs(previous - current) <= tol * max(abs(previous), 1e-300):
                break
            previous = current
    if not np.any(X):
        raise PosekitError(f"learn_bases: lam={lam} is so large that every code is zero; "
                           "use a smaller lam")
    bases = N.T.reshape(k, num_points, 3)
    params = {"k": int(k), "lam": float(lam), "tau": float(tau), "nonnegative": bool(nonnegative),
              "iterations": int(iterations), "seed": int(seed), "training_frames": int(num_frames),
              "objective": _objective(A, N, X, lam, tau),
              "used_atoms": int(np.count_nonzero(np.abs(X).sum(axis=1)))}
    coding = "elastic-net" if nonnegative else "sparse-coding"
    return ShapeBases(bases, coding, params)


def learn_sparse_coding_bases(shapes, k: int, *, lam: float, **options) -> ShapeBases:
    """CRA's bases: min 1/2 ||A - N X||^2 + lam ||X||_1, ||N_i|| <= 1 (signed codes)."""
    return learn_bases(shapes, k, lam=lam, tau=1.0, nonnegative=False, **options)


def learn_elastic_net_bases(shapes, k: int, *, lam: float, tau: float, **options) -> ShapeBases:
    """MCM-RR's bases (Eq. 5): non-negative codes under the elastic net lam (tau l1 + (1-tau) l2^2)."""
    if not tau < 1:
        raise PosekitError(f"learn_elastic_net_bases: tau must be < 1 (tau = 1 is plain sparse "
                           f"coding), got {tau!r}")
    return learn_bases(shapes, k, lam=lam, tau=tau, nonnegative=True, **options)


__all__ = ["CODINGS", "ShapeBases", "normalize_training_shapes", "learn_bases",
           "learn_sparse_coding_bases", "learn_elastic_net_bases"]
