"""CRA: the convex relaxation of Zhou et al. for 3D shape from one frame of 2D landmarks.

Model (MCM-RR article Eqs. 1-4): a shape S (3 x P) is sum_i c_i R_i B_i over K learned bases; under
weak perspective its 2D points are W = sum_i M_i B_i = M~ B~ with M_i = c_i R~_i (2 x 3, R~_i the
first two rows of R_i). The orthogonality M_i M_i^T = c_i^2 I is relaxed to its convex hull, the
spectral-norm ball, which gives the convex program

    min_{M~, Z}  1/2 ||W - Z B~||_F^2 + alpha sum_i ||M_i||_2 + 1/2 ||Z||_Q^2   s.t.  M~ = Z

(Q is zero for CRA; MCM-RR adds its similarity term there, see :mod:`posekit.nrsfm.mcm_rr`),
solved by the ALM of the article's Algorithm 1: the closed-form spectral-norm proximal step
(Eq. 15) for M~, the linear system of Eq. 17 for Z, the multiplier step (Eq. 18) and the penalty
rule of Eq. 19 (x2 when delta_1 > 10 delta_2, /2 when delta_2 > 10 delta_1, unchanged otherwise:
line 13 of Algorithm 1 would halve it in every other case, contradicting Eq. 19). The residuals are
Eq. 20's, with the dual residual scaled by mu (see :func:`spectral_alm`); the test is skipped at the
first iteration, where ||Z^0|| = 0.

Values the article leaves open, and the choices made here (``posekit/nrsfm/defaults.yaml``):

* W is centred on its visible points and divided by its norm (scaled to a full set of P points);
  the bases are centred on the same points, so Eq. 2 needs no translation and alpha does not
  depend on the input's units. The reconstruction is scaled back.
* M^0 = Z^0 = Y^0 = 0, mu^0 = 1 / mean|W| and epsilon = 1e-3 (the public CRA code), at most 1000
  iterations.
* Refinement (Eq. 22, "refinement reconstruction"): the rotation synchronisation
  min sum_i ||M_i - c_i R||^2 with R R^T = I by alternating minimisation (c_i = <M_i, R>/2, R the
  polar factor of sum_i c_i M_i; started from the best rank-one fit), then, as in the public code,
  alternating minimisation of the data term 1/2 ||W - R sum_i c_i B_i||^2 + alpha ||c||_1 (R by
  majorisation on the Stiefel manifold, c by proximal gradient). ``refine="sync"`` stops after
  Eq. 22; ``refine="none"`` keeps one rotation per basis (c_i = ||M_i||_2, R~_i the polar factor
  of M_i).
* The third row of every rotation is the cross product of the first two, so det R = +1. The depth
  sign is then fixed by making the largest coefficient positive: a weak-perspective image cannot
  tell a shape from its mirror image through the image plane.
* Missing points (NaN, or visibility 0) are dropped from the data term; they are still
  reconstructed, from the bases.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from posekit.errors import PosekitError
from posekit.nrsfm.bases import ShapeBases

MIN_VISIBLE_POINTS = 3
REFINE_MODES = ("fit", "sync", "none")
PENALTY_GROWTH = 2.0
"""Eq. 19 (paper): mu is multiplied or divided by 2 ..."""
PENALTY_BALANCE = 10.0
"""... when one residual exceeds 10 times the other (Algorithm 1, lines 11-14)."""


# ------------------------------------------------------------------------------------------ input

@dataclass
class Observations:
    """2D input made ready for the solvers.

    W (F, 2, P) centred on the visible points, divided by ``scale``, zero at missing points;
    mask (F, P) visible points; centroid (F, 2) mean of the visible points; scale (F,).
    """

    W: np.ndarray
    mask: np.ndarray
    centroid: np.ndarray
    scale: np.ndarray


def prepare_observations(keypoints, visibility=None) -> Observations:
    """Check and normalise 2D keypoints (F, P, 2) (or one frame (P, 2)).

    A point is missing where its coordinates are NaN or ``visibility`` (F, P) is 0/False. Each
    frame needs at least 3 visible points that do not all coincide.
    """
    try:
        kp = np.asarray(keypoints, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError("keypoints: expected numeric 2D points (F, P, 2)") from None
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] != 2 or kp.shape[0] == 0:
        raise PosekitError(f"keypoints: expected 2D points (F, P, 2), got {np.shape(keypoints)}")
    nan = np.isnan(kp).any(axis=-1)
    if np.isinf(kp).any():
        raise PosekitError("keypoints: contains infinite coordinates")
    if visibility is None:
        mask = ~nan
    else:
        try:
            vis = np.asarray(visibility, dtype=float)
        except (TypeError, ValueError):
            raise PosekitError("visibility: expected numbers, one per point and frame") from None
        if vis.ndim == 1 and kp.shape[0] == 1:
            vis = vis[None]
        if vis.shape != kp.shape[:2]:
            raise PosekitError(f"visibility: expected shape {kp.shape[:2]} to match keypoints, "
                               f"got {vis.shape}")
        if not np.all(np.isfinite(vis)):
            raise PosekitError("visibility: contains NaN or infinite values")
        mask = vis > 0
        if np.any(mask & nan):
            f, p = np.argwhere(mask & nan)[0]
            raise PosekitError(f"keypoints: frame {f}, point {p} is NaN but marked visible")
    counts = mask.sum(axis=1)
    if np.any(counts < MIN_VISIBLE_POINTS):
        f = int(np.flatnonzero(counts < MIN_VISIBLE_POINTS)[0])
        raise PosekitError(f"keypoints: frame {f} has {counts[f]} visible points; at least "
                           f"{MIN_VISIBLE_POINTS} are needed")
    num_points = kp.shape[1]
    xy = np.where(mask[..., None], kp, 0.0)
    centroid = xy.sum(axis=1) / counts[:, None]
    centred = np.where(mask[..., None], kp - centroid[:, None, :], 0.0)
    scale = np.linalg.norm(centred, axis=(1, 2)) * np.sqrt(num_points / counts)
    extent = np.abs(np.where(mask[..., None], kp, 0.0)).max(axis=(1, 2))
    flat = scale <= 1e-12 * np.maximum(extent, 1e-300)
    if np.any(flat):
        raise PosekitError(f"keypoints: frame {int(np.flatnonzero(flat)[0])} has all visible points "
                           "at one location")
    W = (centred / scale[:, None, None]).transpose(0, 2, 1)
    return Observations(W, mask, centroid, scale)


def centring_matrices(mask: np.ndarray):
    """Per-frame P x P projectors C (F, P, P) with x C = x centred on the visible points and zeroed
    at the missing ones (x a row of coordinates); None when every point of every frame is visible
    (the bases are centred already, so C would change nothing)."""
    if mask.all():
        return None
    m = mask.astype(float)
    return m[:, None, :] * np.eye(mask.shape[1]) - m[:, :, None] * m[:, None, :] \
        / m.sum(axis=1)[:, None, None]


def centred_stacked_bases(bases: ShapeBases) -> np.ndarray:
    """B~ (3K, P) with every basis centred on its points."""
    stacked = bases.stacked
    return stacked - stacked.mean(axis=1, keepdims=True)


def check_compatible(bases: ShapeBases, keypoints_shape: tuple) -> None:
    if keypoints_shape[-2] != bases.num_points:
        raise PosekitError(f"keypoints have {keypoints_shape[-2]} points per frame but the bases "
                           f"have {bases.num_points}")


# -------------------------------------------------------------------------------- proximal steps

def shrink_singular_values(s1, s2, kappa):
    """Eq. 15 for two singular values s1 >= s2: s - kappa * P_l1(s / kappa), in closed form."""
    total = s1 + s2
    kill = total <= kappa
    merge = ~kill & (s1 - s2 <= kappa)
    half = 0.5 * (total - kappa)
    n1 = np.where(kill, 0.0, np.where(merge, half, s1 - kappa))
    n2 = np.where(kill, 0.0, np.where(merge, half, s2))
    return n1, n2


def _safe_ratio(num, den):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _prox_rows(row0, row1, kappa):
    """Eq. 15 on blocks given by their two rows (..., 3) each; returns the two rows of the result.

    With P P^T = s1^2 u1 u1^T + s2^2 u2 u2^T, the result is r2 P + (r1 - r2) u1 u1^T P where
    r = (shrunk s) / s, from the 2 x 2 eigen-decomposition in closed form (no SVD per block).
    """
    a = (row0 * row0).sum(axis=-1)
    b = (row0 * row1).sum(axis=-1)
    c = (row1 * row1).sum(axis=-1)
    half_gap = 0.5 * (a - c)
    radius = np.sqrt(half_gap * half_gap + b * b)
    l1 = 0.5 * (a + c) + radius
    l2 = np.maximum(_safe_ratio(a * c - b * b, l1), 0.0)
    s1, s2 = np.sqrt(l1), np.sqrt(l2)
    n1, n2 = shrink_singular_values(s1, s2, kappa)
    r1, r2 = _safe_ratio(n1, s1), _safe_ratio(n2, s2)
    # Top eigenvector of [[a, b], [b, c]]: the longer of (l1 - c, b) and (b, l1 - a); l1 - c >= l1 - a
    # exactly when a >= c.
    first = a >= c
    ux = np.where(first, l1 - c, b)
    uy = np.where(first, b, l1 - a)
    length = np.sqrt(ux * ux + uy * uy)
    inverse = _safe_ratio(1.0, length)
    ux = np.where(length > 0, ux * inverse, 1.0)
    uy = uy * inverse
    gain = r1 - r2
    along = (gain * ux)[..., None] * row0 + (gain * uy)[..., None] * row1
    return (r2[..., None] * row0 + ux[..., None] * along,
            r2[..., None] * row1 + uy[..., None] * along)


def prox_spectral_norm(P, kappa):
    """argmin_M 1/2 ||M - P||_F^2 + kappa ||M||_2 for 2 x 3 blocks P (..., 2, 3) (Eq. 15)."""
    P = np.asarray(P, dtype=float)
    row0, row1 = _prox_rows(P[..., 0, :], P[..., 1, :], np.asarray(kappa, dtype=float))
    return np.stack([row0, row1], axis=-2)


def polar_rows(A):
    """Nearest matrices with orthonormal rows to A (..., 2, 3): U V^T of A's thin SVD."""
    u, _, vt = np.linalg.svd(A, full_matrices=False)
    return u @ vt


def complete_rotation(R2):
    """(..., 3, 3) rotations from their first two rows (..., 2, 3)."""
    return np.concatenate([R2, np.cross(R2[..., 0, :], R2[..., 1, :])[..., None, :]], axis=-2)


# ----------------------------------------------------------------------------------------- ALM

@dataclass
class AlmResult:
    """M~ per frame as K blocks (F, K, 2, 3); Z and Y as (F, 2, 3K); ALM iterations and convergence."""

    M: np.ndarray
    Z: np.ndarray
    Y: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def _times_bases(X, B):
    """X (n, d, 3K) @ B (3K, P) as one matrix product."""
    n, d, k3 = X.shape
    return (X.reshape(n * d, k3) @ B).reshape(n, d, B.shape[1])


def _times_bases_t(X, Bt):
    """X (n, d, P) @ Bt (P, 3K) as one matrix product (Bt = B^T stored contiguous: OpenBLAS is
    many times slower on a transposed view of this shape)."""
    n, d, p = X.shape
    return (X.reshape(n * d, p) @ Bt).reshape(n, d, Bt.shape[1])


def spectral_alm(W, B, C=None, *, alpha: float, ridge=None, tol: float = 1e-3,
                 max_iter: int = 1000, growth: float = PENALTY_GROWTH,
                 balance: float = PENALTY_BALANCE) -> AlmResult:
    """Algorithm 1, lines 3-18, for every frame at once.

    W (F, 2, P) normalised observations; B (3K, P) centred stacked bases
    (:func:`centred_stacked_bases`); C (F, P, P) or None: the frames' visibility projectors
    (:func:`centring_matrices`), so frame f's bases are B C_f; ridge (F, K) or None: the weights
    q_i of the quadratic term 1/2 sum_i q_i ||Z_i||_F^2 (MCM-RR: q_i = beta d_i^2; CRA: none).
    Each frame stops on its own when delta_1, delta_2 < tol.

    The dual residual delta_2 is mu ||Z^{t+1} - Z^t|| / ||Z^t||, the ADMM dual residual of Boyd et
    al. and of the public CRA code; Eq. 20 as printed drops mu, which lets the penalty rule drive mu
    far down and slows convergence several times.
    The Z system (B~ B~^T + mu I + diag(q) (x) I_3) of Eq. 17 is 3K x 3K but B~ has rank <= P, so it
    is solved through the Woodbury identity with a P x P matrix, refactored only when mu changes.
    """
    num_frames, num_points = W.shape[0], W.shape[2]
    k3 = B.shape[0]
    k = k3 // 3
    if not alpha > 0:
        raise PosekitError(f"alpha must be > 0, got {alpha}")
    q = np.zeros((num_frames, k3)) if ridge is None else np.repeat(np.asarray(ridge, float), 3, axis=1)
    Bt = np.ascontiguousarray(B.T)
    WB = _times_bases_t(W, Bt)
    visible = np.ones((num_frames, num_points)) if C is None else np.diagonal(C, axis1=1, axis2=2) > 0
    mean_abs = np.abs(W).sum(axis=(1, 2)) / (2 * visible.sum(axis=1))
    mu = 1.0 / np.maximum(mean_abs, 1e-12)
    M = np.zeros((num_frames, 2, k3))
    Z = np.zeros_like(M)
    Y = np.zeros_like(M)
    iterations = np.zeros(num_frames, dtype=int)
    converged = np.zeros(num_frames, dtype=bool)
    eye = np.eye(num_points)
    BtB = Bt @ B

    def factor(idx):
        """Delta = mu + q and H = C (I + C B^T Delta^-1 B C)^-1 C for the frames idx."""
        delta = mu[idx, None] + q[idx]
        gram = BtB / mu[idx, None, None] if ridge is None else (Bt[None] / delta[:, None, :]) @ B
        if C is None:
            return delta, np.linalg.inv(eye + gram)
        Ci = C[idx]
        return delta, Ci @ np.linalg.inv(eye + Ci @ gram @ Ci) @ Ci

    delta, H = factor(np.arange(num_frames))
    active = np.arange(num_frames)
    for t in range(max_iter):
        if active.size == 0:
            break
        a = active
        mu_a = mu[a]
        Z_prev, Y_a, d_a = Z[a], Y[a], delta[a]
        # Eqs. 14-15: M from P = Z - Y / mu, block by block (row i of block j: [:, i, j, :]).
        P = (Z_prev - Y_a / mu_a[:, None, None]).reshape(len(a), 2, k, 3)
        M_a = np.stack(_prox_rows(P[:, 0], P[:, 1], (alpha / mu_a)[:, None]), axis=1).reshape(len(a), 2, k3)
        # Eq. 17 through Woodbury.
        rhs = (WB[a] + mu_a[:, None, None] * M_a + Y_a) / d_a[:, None, :]
        Z_a = rhs - _times_bases_t(_times_bases(rhs, B) @ H[a], Bt) / d_a[:, None, :]
        # Eq. 18.
        Y_a = Y_a + mu_a[:, None, None] * (M_a - Z_a)
        M[a], Z[a], Y[a] = M_a, Z_a, Y_a
        iterations[a] = t + 1
        if t == 0:
            continue
        norm_prev = np.maximum(np.linalg.norm(Z_prev, axis=(1, 2)), 1e-300)
        d1 = np.linalg.norm(M_a - Z_a, axis=(1, 2)) / norm_prev
        d2 = mu_a * np.linalg.norm(Z_a - Z_prev, axis=(1, 2)) / norm_prev
        done = (d1 < tol) & (d2 < tol)
        converged[a[done]] = True
        up, down = ~done & (d1 > balance * d2), ~done & (d2 > balance * d1)
        changed = a[up | down]
        mu[a[up]] *= growth
        mu[a[down]] /= growth
        if changed.size:
            delta[changed], H[changed] = factor(changed)
        active = a[~done]
    blocks = M.reshape(num_frames, 2, k, 3).transpose(0, 2, 1, 3)
    return AlmResult(blocks, Z, Y, iterations, converged)


# ----------------------------------------------------------------------------------- refinement

def synchronize_rotation(M, *, max_iter: int = 100, tol: float = 1e-10):
    """Eq. 22: min_{c, R} sum_i ||M_i - c_i R||_F^2 with R R^T = I, per frame.

    M (F, K, 2, 3). Returns (R (F, 3, 3) with det +1, c (F, K)), the sign fixed so that the largest
    |c_i| is positive.
    """
    num_frames, k = M.shape[:2]
    flat = M.reshape(num_frames, k, 6)
    _, vectors = np.linalg.eigh(np.einsum("fki,fkj->fij", flat, flat))
    R = polar_rows(vectors[:, :, -1].reshape(num_frames, 2, 3))
    for _ in range(max_iter):
        c = 0.5 * np.einsum("fkij,fij->fk", M, R)
        R_new = polar_rows(np.einsum("fk,fkij->fij", c, M))
        change = np.abs(R_new - R).max()
        R = R_new
        if change < tol:
            break
    c = 0.5 * np.einsum("fkij,fij->fk", M, R)
    sign = np.sign(c[np.arange(num_frames), np.abs(c).argmax(axis=1)])
    sign = np.where(sign == 0, 1.0, sign)
    return complete_rotation(R * sign[:, None, None]), c * sign[:, None]


def _masked(X, C):
    """Rows of point coordinates X (F, d, P) centred on the visible points (X C)."""
    return X if C is None else X @ C


def _stiefel_fit(W, S, R2, *, steps: int):
    """A few majorisation steps of min_R ||W - R S||_F^2 over 2 x 3 R with orthonormal rows
    (each step: R <- polar(W S^T + R (L I - S S^T)), L the top eigenvalue of S S^T)."""
    SSt = S @ np.swapaxes(S, 1, 2)
    L = np.linalg.eigvalsh(SSt)[:, -1]
    WSt = W @ np.swapaxes(S, 1, 2)
    shifted = L[:, None, None] * np.eye(3) - SSt
    for _ in range(steps):
        R2 = polar_rows(WSt + R2 @ shifted)
    return R2


def refine_fit(W, bases: ShapeBases, C, R, c, *, alpha: float, max_iter: int = 50,
               tol: float = 1e-4, lasso_iter: int = 30, stiefel_steps: int = 5):
    """Alternating minimisation of 1/2 ||W - R~ (sum_i c_i B_i) C||^2 + alpha ||c||_1 from (R, c).

    W (F, 2, P); C (F, P, P) or None (:func:`centring_matrices`); R (F, 3, 3); c (F, K). R~ takes a
    few majorisation steps on the Stiefel manifold, c a few FISTA steps (step 1 / ||B||_2^2, a
    Lipschitz bound for every rotation and visibility). A frame stops when its objective changes by
    less than ``tol`` (relative). Returns (R, c).
    """
    num_points = W.shape[2]
    flat = centred_stacked_bases(bases).reshape(bases.num_bases, 3 * num_points)
    flat_t = np.ascontiguousarray(flat.T)
    step = 1.0 / max(np.linalg.norm(flat, 2) ** 2, 1e-300)
    R2, c = R[:, :2].copy(), c.copy()
    previous = np.full(len(W), np.inf)
    active = np.arange(len(W))
    for _ in range(max_iter):
        if active.size == 0:
            break
        W_a, C_a, R_a = W[active], None if C is None else C[active], R2[active]

        def shape(coef):
            return _masked((coef @ flat).reshape(len(coef), 3, num_points), C_a)

        R_a = _stiefel_fit(W_a, shape(c[active]), R_a, steps=stiefel_steps)
        R_a_t = np.swapaxes(R_a, 1, 2)
        x = y = c[active]
        t = 1.0
        for _ in range(lasso_iter):
            residual = W_a - R_a @ shape(y)
            z = y + step * ((R_a_t @ residual).reshape(len(active), -1) @ flat_t)
            x_new = np.sign(z) * np.maximum(np.abs(z) - step * alpha, 0.0)
            t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
            y = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = x_new, t_new
        R2[active], c[active] = R_a, x
        objective = 0.5 * np.sum((W_a - R_a @ shape(x)) ** 2, axis=(1, 2)) + alpha * np.abs(x).sum(axis=1)
        done = np.abs(previous[active] - objective) <= tol * objective
        previous[active] = objective
        active = active[~done]
    return complete_rotation(R2), c


# -------------------------------------------------------------------------------- reconstruction

@dataclass
class Reconstruction:
    """Per-frame 3D shapes in the camera frame.

    shapes (F, P, 3): x, y in the input's units and position (they overlay the 2D input), z relative
    (zero mean over the visible points); depth sign: see the module notes. rotations (F, 3, 3) the
    shared camera rotation (None for ``refine="none"``); coefficients (F, K) the c_i, in normalised
    units (times ``scale`` gives input units); iterations / converged: the ALM's.
    """

    shapes: np.ndarray
    rotations: np.ndarray | None
    coefficients: np.ndarray
    scale: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    method: str
    info: dict = field(default_factory=dict)


def _compose(obs: Observations, bases: ShapeBases, R, c) -> np.ndarray:
    """Camera-frame shapes from one rotation per frame: R sum_i c_i B_i, placed on the input."""
    canonical = np.einsum("fk,kpj->fpj", c, bases.bases)
    return _place(obs, canonical @ np.swapaxes(R, 1, 2))


def _place(obs: Observations, camera_shapes) -> np.ndarray:
    m = obs.mask[..., None]
    mean = (camera_shapes * m).sum(axis=1, keepdims=True) / m.sum(axis=1, keepdims=True)
    out = (camera_shapes - mean) * obs.scale[:, None, None]
    out[..., :2] += obs.centroid[:, None, :]
    return out


# Small matrix products: one BLAS thread is faster than several fighting over shared cores
# (the quick benchmark took 7.5 min with default threading against 37 s with one thread).
@threadpool_limits.wrap(limits=1, user_api="blas")
def solve(keypoints, bases: ShapeBases, *, alpha: float, ridge_fn=None, visibility=None,
          refine: str = "fit", tol: float = 1e-3, max_iter: int = 1000, method: str = "cra",
          refine_iter: int = 50, chunk: int = 256) -> Reconstruction:
    """The shared pipeline of CRA and its variants: normalise, ALM, refine, compose.

    ``ridge_fn(obs, B, C) -> (F, K)`` supplies the quadratic weights of MCM-RR's similarity term
    (None for CRA). Frames are solved in chunks of ``chunk`` to bound memory.
    """
    if refine not in REFINE_MODES:
        raise PosekitError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
    obs = prepare_observations(keypoints, visibility)
    check_compatible(bases, obs.W.transpose(0, 2, 1).shape)
    num_frames, k = obs.W.shape[0], bases.num_bases
    shapes = np.zeros((num_frames, bases.num_points, 3))
    rotations = None if refine == "none" else np.zeros((num_frames, 3, 3))
    coefficients = np.zeros((num_frames, k))
    iterations = np.zeros(num_frames, dtype=int)
    converged = np.zeros(num_frames, dtype=bool)
    ridges = []
    B = centred_stacked_bases(bases)
    for start in range(0, num_frames, chunk):
        part = slice(start, min(start + chunk, num_frames))
        sub = Observations(obs.W[part], obs.mask[part], obs.centroid[part], obs.scale[part])
        C = centring_matrices(sub.mask)
        ridge = None if ridge_fn is None else ridge_fn(sub, B, C)
        if ridge is not None:
            ridges.append(ridge)
        alm = spectral_alm(sub.W, B, C, alpha=alpha, ridge=ridge, tol=tol, max_iter=max_iter)
        iterations[part], converged[part] = alm.iterations, alm.converged
        if refine == "none":
            c = np.linalg.norm(alm.M, ord=2, axis=(2, 3))
            per_basis = complete_rotation(polar_rows(alm.M))
            camera = np.einsum("fk,fkij,kpj->fpi", c, per_basis, bases.bases)
            shapes[part] = _place(sub, camera)
            coefficients[part] = c
            continue
        R, c = synchronize_rotation(alm.M)
        if refine == "fit":
            R, c = refine_fit(sub.W, bases, C, R, c, alpha=alpha, max_iter=refine_iter)
        shapes[part] = _compose(sub, bases, R, c)
        rotations[part], coefficients[part] = R, c
    info = {"similarity_ridge": np.concatenate(ridges)} if ridges else {}
    return Reconstruction(shapes, rotations, coefficients, obs.scale, iterations, converged,
                          method, info)


def reconstruct_cra(keypoints, bases: ShapeBases, *, alpha: float, visibility=None,
                    refine: str = "fit", **options) -> Reconstruction:
    """CRA (Zhou et al.): convex relaxation + refinement, any bases (designed for sparse coding)."""
    return solve(keypoints, bases, alpha=alpha, visibility=visibility, refine=refine,
                 method="cra", **options)


__all__ = ["MIN_VISIBLE_POINTS", "REFINE_MODES", "Observations", "prepare_observations",
           "centring_matrices", "centred_stacked_bases", "check_compatible", "shrink_singular_values",
           "prox_spectral_norm", "polar_rows", "complete_rotation", "AlmResult", "spectral_alm",
           "synchronize_rotation", "refine_fit", "Reconstruction", "solve", "reconstruct_cra"]
