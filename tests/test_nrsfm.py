"""NRSfM solvers (CRA, MCM-RR and ablations) and basis learning, against known geometry and
independent references (SVD with a sort-based l1-ball projection, a plain proximal-gradient solver,
scipy's rotation tools)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posekit.errors import PosekitError
from posekit.geometry.rotations import is_rotation_matrix
from posekit.nrsfm import (ShapeBases, learn_bases, learn_elastic_net_bases,
                           learn_sparse_coding_bases, normalize_training_shapes, prox_spectral_norm,
                           reconstruct, synchronize_rotation)
from posekit.nrsfm.cra import (centred_stacked_bases, centring_matrices, prepare_observations,
                               spectral_alm)
from posekit.nrsfm.mcm_rr import similarity_distances, similarity_weights


def project_l1_ball(v):
    """Euclidean projection of a non-negative vector onto the unit l1 ball (Duchi et al. 2008)."""
    if v.sum() <= 1:
        return v
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(u) + 1) > cumulative - 1)[0][-1]
    return np.maximum(v - (cumulative[rho] - 1) / (rho + 1), 0)


def random_bases(k=8, points=15, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(k, points, 3))
    b -= b.mean(axis=1, keepdims=True)
    return b / np.linalg.norm(b, axis=(1, 2))[:, None, None]


def sparse_shapes(bases, frames=12, seed=1, active=2):
    """Shapes in the span of the bases (a few positive coefficients), rotated by random cameras."""
    rng = np.random.default_rng(seed)
    c = np.zeros((frames, len(bases)))
    for f in range(frames):
        c[f, rng.choice(len(bases), active, replace=False)] = rng.uniform(0.6, 1.4, active)
    shapes = np.einsum("fk,kpj->fpj", c, bases) * 250.0
    rotations = Rotation.random(frames, random_state=seed).as_matrix()
    camera = shapes @ np.swapaxes(rotations, 1, 2)
    return camera[..., :2] + rng.uniform(-300, 300, size=(frames, 1, 2)), camera


def normalized_error(pred, camera):
    """Relative error after the best rotation or reflection (mirror depth is unobservable)."""
    from posekit.metrics.nrsfm import normalized_shape_error

    return normalized_shape_error(pred, camera - camera.mean(axis=1, keepdims=True))["per_frame"]


# ------------------------------------------------------------------------------ proximal step

def test_prox_spectral_norm_matches_svd_with_l1_ball_projection():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(500, 2, 3)) * rng.uniform(0.1, 3, size=(500, 1, 1))
    P[:50, 1] = 0.7 * P[:50, 0]                       # rank one
    P[50:60] = 0.0
    kappa = rng.uniform(0, 4, size=500)
    got = prox_spectral_norm(P, kappa)
    u, s, vt = np.linalg.svd(P, full_matrices=False)
    want = np.stack([u[i] @ np.diag(s[i] - kappa[i] * project_l1_ball(s[i] / max(kappa[i], 1e-300)))
                     @ vt[i] if kappa[i] > 0 else P[i] for i in range(500)])
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_prox_spectral_norm_minimises_its_objective():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    for _ in range(3):
        P, kappa = rng.normal(size=(2, 3)), rng.uniform(0.2, 1.5)
        def objective(m):
            return 0.5 * np.sum((m - P.ravel()) ** 2) + kappa * np.linalg.norm(m.reshape(2, 3), 2)
        best = minimize(objective, P.ravel(), method="Powell", options={"xtol": 1e-8, "ftol": 1e-12})
        assert objective(prox_spectral_norm(P, kappa).ravel()) <= best.fun + 1e-9


# ---------------------------------------------------------------------------- ALM (Algorithm 1)

@pytest.mark.parametrize("with_ridge", [False, True])
def test_alm_reaches_the_kkt_point_of_the_convex_program(with_ridge):
    bases = ShapeBases(random_bases(6, 12), "sparse-coding")
    rng = np.random.default_rng(2)
    W = rng.normal(size=(3, 2, 12))
    W -= W.mean(axis=2, keepdims=True)
    B = centred_stacked_bases(bases)
    alpha, tol = 0.05, 1e-7
    ridge = rng.uniform(0.01, 0.2, size=(3, 6)) if with_ridge else None
    alm = spectral_alm(W, B, alpha=alpha, ridge=ridge, tol=tol)
    assert alm.converged.all()
    Z, Y = alm.Z, alm.Y
    M = alm.M.transpose(0, 2, 1, 3).reshape(3, 2, 18)
    # Constraint M = Z of Eq. 10.
    assert np.all(np.linalg.norm(M - Z, axis=(1, 2)) <= 1e-5 * np.linalg.norm(Z, axis=(1, 2)))
    # Stationarity in Z (Eq. 16 with the updated multiplier): Y = -(W - Z B) B^T + Z Q.
    q = np.zeros((3, 18)) if ridge is None else np.repeat(ridge, 3, axis=1)
    np.testing.assert_allclose(Y, -(W - Z @ B) @ B.T + Z * q[:, None, :], atol=1e-6)
    # Stationarity in M: -Y_i is alpha times a subgradient of ||M_i||_2.
    blocks_y = -Y.reshape(3, 2, 6, 3).transpose(0, 2, 1, 3)
    nuclear = np.linalg.svd(blocks_y, compute_uv=False).sum(axis=-1)
    assert np.all(nuclear <= alpha * (1 + 1e-4))
    spectral = np.linalg.norm(alm.M, ord=2, axis=(2, 3))
    inner = np.einsum("fkij,fkij->fk", blocks_y, alm.M)
    np.testing.assert_allclose(inner, alpha * spectral, rtol=1e-4, atol=1e-8)


def test_alm_objective_matches_plain_proximal_gradient():
    bases = ShapeBases(random_bases(5, 10, seed=3), "sparse-coding")
    rng = np.random.default_rng(4)
    W = rng.normal(size=(1, 2, 10))
    W -= W.mean(axis=2, keepdims=True)
    B = centred_stacked_bases(bases)
    alpha = 0.1

    def objective(M):
        flat = M.transpose(0, 2, 1, 3).reshape(1, 2, 15)
        return 0.5 * np.sum((W - flat @ B) ** 2) + alpha * np.linalg.norm(M, ord=2, axis=(2, 3)).sum()

    alm = spectral_alm(W, B, alpha=alpha, tol=1e-8)
    # FISTA on M directly (Beck and Teboulle), with the same proximal operator.
    M = previous = np.zeros((1, 5, 2, 3))
    step, t = 1.0 / np.linalg.norm(B, 2) ** 2, 1.0
    for _ in range(3000):
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        point = M + (t - 1) / t_next * (M - previous)
        flat = point.transpose(0, 2, 1, 3).reshape(1, 2, 15)
        flat = flat + step * (W - flat @ B) @ B.T
        previous, M, t = M, prox_spectral_norm(flat.reshape(1, 2, 5, 3).transpose(0, 2, 1, 3),
                                                step * alpha), t_next
    assert objective(alm.M) == pytest.approx(objective(M), rel=1e-6)


# ------------------------------------------------------------------------- refinement (Eq. 22)

def test_synchronize_rotation_recovers_a_shared_rotation():
    rng = np.random.default_rng(5)
    R = Rotation.random(4, random_state=5).as_matrix()
    c = rng.uniform(0.2, 2.0, size=(4, 7)) * rng.choice([-1, 1], size=(4, 7))
    M = c[:, :, None, None] * R[:, None, :2, :]
    R_hat, c_hat = synchronize_rotation(M)
    assert is_rotation_matrix(R_hat).all()
    # The pair (c, R) equals (-c, -R) for M: compare up to that sign.
    sign = np.sign(np.einsum("fk,fk->f", c, c_hat))
    np.testing.assert_allclose(c_hat * sign[:, None], c, atol=1e-9)
    np.testing.assert_allclose(R_hat[:, :2] * sign[:, None, None], R[:, :2], atol=1e-9)


@pytest.mark.parametrize("refine", ["fit", "sync"])
def test_refinement_returns_rotations(refine):
    bases = ShapeBases(random_bases(), "sparse-coding")
    W, _ = sparse_shapes(bases.bases, frames=10, active=3)
    rec = reconstruct(W, bases, "cra", refine=refine)
    assert rec.rotations.shape == (10, 3, 3)
    assert is_rotation_matrix(rec.rotations, atol=1e-9).all()


# ---------------------------------------------------------------------------- exact recovery

@pytest.mark.parametrize("method,coding", [("cra", "sparse-coding"), ("cra-sc", "sparse-coding"),
                                           ("cra-en", "elastic-net"), ("mcm-rr", "elastic-net")])
def test_shape_in_the_span_of_the_bases_is_recovered(method, coding):
    bases = ShapeBases(random_bases(), coding)
    W, camera = sparse_shapes(bases.bases)
    rec = reconstruct(W, bases, method, alpha=1e-4, tol=1e-6)
    assert normalized_error(rec.shapes, camera).max() < 1e-3
    # x, y lie on the observations, and the rotation maps the canonical shape to the camera frame.
    np.testing.assert_allclose(rec.shapes[..., :2], W, atol=0.5)


def test_without_refinement_one_rotation_per_basis_still_fits_a_single_basis_shape():
    bases = ShapeBases(random_bases(), "sparse-coding")
    W, camera = sparse_shapes(bases.bases, active=1)
    rec = reconstruct(W, bases, "cra", alpha=1e-4, tol=1e-7, refine="none")
    assert rec.rotations is None
    assert normalized_error(rec.shapes, camera).max() < 1e-3


def test_missing_points_are_reconstructed_from_the_bases():
    bases = ShapeBases(random_bases(k=6, points=17), "sparse-coding")
    W, camera = sparse_shapes(bases.bases, frames=8)
    rng = np.random.default_rng(6)
    visibility = np.ones(W.shape[:2])
    for f in range(len(W)):
        visibility[f, rng.choice(17, 4, replace=False)] = 0
    with_nan = np.where(visibility[..., None] > 0, W, np.nan)
    by_nan = reconstruct(with_nan, bases, "cra", alpha=1e-4, tol=1e-6)
    by_mask = reconstruct(W, bases, "cra", alpha=1e-4, tol=1e-6, visibility=visibility)
    np.testing.assert_allclose(by_nan.shapes, by_mask.shapes, atol=1e-9)
    assert normalized_error(by_nan.shapes, camera).max() < 1e-3
    mcm = reconstruct(with_nan, ShapeBases(bases.bases, "elastic-net"), "mcm-rr", alpha=1e-4, tol=1e-6)
    assert normalized_error(mcm.shapes, camera).max() < 1e-3


def test_per_frame_scale_and_offset_carry_through():
    """Weak perspective: scaling and shifting a frame's 2D points scales and shifts its 3D shape."""
    bases = ShapeBases(random_bases(), "elastic-net")
    W, _ = sparse_shapes(bases.bases, frames=6)
    rng = np.random.default_rng(7)
    scale = rng.uniform(0.01, 50, size=6)
    offset = rng.uniform(-1e3, 1e3, size=(6, 1, 2))
    a = reconstruct(W, bases, "mcm-rr")
    b = reconstruct(W * scale[:, None, None] + offset, bases, "mcm-rr")
    expected = a.shapes * scale[:, None, None]
    expected[..., :2] += offset
    np.testing.assert_allclose(b.shapes, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


# --------------------------------------------------------------------- similarity (Eqs. 11-12)

def test_similarity_is_zero_for_an_affine_view_of_a_basis():
    bases = random_bases(k=5, points=14, seed=8)
    rng = np.random.default_rng(9)
    view = rng.normal(size=(2, 3))
    W = (view @ bases[2].T)[None]
    B = centred_stacked_bases(ShapeBases(bases, "elastic-net"))
    rho = similarity_distances(W, B)
    assert rho[0, 2] == pytest.approx(0.0, abs=1e-10)
    assert np.all(np.delete(rho[0], 2) > 0.05) and np.all(rho <= 1 + 1e-12)
    d = similarity_weights(W, B, gamma=0.5)
    np.testing.assert_allclose(d, np.exp(rho / 0.5))
    # With points missing, the distance uses the visible points only.
    mask = np.ones((1, 14), bool)
    mask[0, [0, 5]] = False
    obs = prepare_observations(np.where(mask[..., None], W.transpose(0, 2, 1), np.nan))
    rho_masked = similarity_distances(obs.W, B, centring_matrices(obs.mask))
    assert rho_masked[0, 2] == pytest.approx(0.0, abs=1e-10)


# ----------------------------------------------------------------------------- basis learning

def test_training_shapes_are_centred_scaled_and_aligned():
    rng = np.random.default_rng(10)
    shapes = rng.normal(size=(20, 9, 3)) * 100 + 500
    rotations = Rotation.random(20, random_state=11).as_matrix()
    normalized = normalize_training_shapes(shapes)
    rotated = normalize_training_shapes(shapes @ np.swapaxes(rotations, 1, 2) * 3.0)
    np.testing.assert_allclose(normalized.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=(1, 2)), 1, rtol=1e-12)
    # Rotating and scaling the inputs changes the result by one global rotation only.
    np.testing.assert_allclose(rotated, normalized @ rotations[0].T, atol=1e-8)


@pytest.mark.parametrize("nonnegative,tau", [(False, 1.0), (True, 0.5)])
def test_dictionary_learning_descends_and_keeps_atoms_in_the_unit_ball(nonnegative, tau):
    atoms = random_bases(k=4, points=10, seed=12)
    rng = np.random.default_rng(13)
    codes = rng.uniform(0.2, 1.0, size=(60, 4)) * (rng.uniform(size=(60, 4)) < 0.5)
    codes[codes.sum(axis=1) == 0, 0] = 1.0
    shapes = np.einsum("fk,kpj->fpj", codes, atoms)
    objectives = [learn_bases(shapes, 4, lam=0.01, tau=tau, nonnegative=nonnegative, n_iter=n,
                              tol=0, normalize=False).params["objective"] for n in (1, 10, 100, 400)]
    assert all(a >= b - 1e-12 for a, b in zip(objectives, objectives[1:]))
    A = shapes.reshape(60, -1)
    assert objectives[-1] < 0.05 * 0.5 * np.sum(A ** 2)
    bases = learn_bases(shapes, 4, lam=0.01, tau=tau, nonnegative=nonnegative, n_iter=50)
    assert np.all(np.linalg.norm(bases.bases, axis=(1, 2)) <= 1 + 1e-12)
    assert bases.coding == ("elastic-net" if nonnegative else "sparse-coding")


def test_learners_and_bases_file_round_trip(tmp_path):
    shapes = np.einsum("fk,kpj->fpj", np.abs(np.random.default_rng(14).normal(size=(40, 5))),
                       random_bases(k=5, points=8, seed=15))
    en = learn_elastic_net_bases(shapes, 6, lam=0.01, tau=0.5, n_iter=30)
    sc = learn_sparse_coding_bases(shapes, 6, lam=0.01, n_iter=30)
    assert (en.coding, sc.coding) == ("elastic-net", "sparse-coding")
    en.joint_names = tuple(f"p{i}" for i in range(8))
    en.save(tmp_path / "b.npz")
    loaded = ShapeBases.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(loaded.bases, en.bases)
    assert (loaded.coding, loaded.params, loaded.joint_names) == (en.coding, en.params, en.joint_names)
    np.testing.assert_array_equal(loaded.stacked[3:6], en.bases[1].T)


# --------------------------------------------------------------------------------- bad input

def test_bad_input_raises_posekit_error(tmp_path):
    bases = ShapeBases(random_bases(k=4, points=10), "sparse-coding")
    good = np.random.default_rng(16).normal(size=(3, 10, 2))
    with pytest.raises(PosekitError, match="9 points per frame but the bases have 10"):
        reconstruct(good[:, :9], bases, "cra")
    with pytest.raises(PosekitError, match=r"\(F, P, 2\)"):
        reconstruct(good[..., :1], bases, "cra")
    few = good.copy()
    few[1, 2:] = np.nan
    with pytest.raises(PosekitError, match="frame 1 has 2 visible points"):
        reconstruct(few, bases, "cra")
    with pytest.raises(PosekitError, match="NaN but marked visible"):
        reconstruct(few, bases, "cra", visibility=np.ones((3, 10)))
    with pytest.raises(PosekitError, match="infinite"):
        reconstruct(np.where(few == few, good, np.inf), bases, "cra")
    with pytest.raises(PosekitError, match="elastic-net bases"):
        reconstruct(good, bases, "mcm-rr")
    with pytest.raises(PosekitError, match="unknown parameter"):
        reconstruct(good, bases, "cra", beta=1.0)
    with pytest.raises(PosekitError, match="unknown NRSfM method"):
        reconstruct(good, bases, "pca")
    with pytest.raises(PosekitError, match="one location"):
        reconstruct(np.zeros((1, 10, 2)), bases, "cra")
    with pytest.raises(PosekitError, match="NaN"):
        ShapeBases(np.full((2, 10, 3), np.nan), "sparse-coding")
    with pytest.raises(PosekitError, match="k must be"):
        learn_bases(np.ones((3, 10, 3)) + np.arange(10)[:, None], 5, lam=0.1)
    with pytest.raises(PosekitError, match="no such file"):
        ShapeBases.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "nobases.npz", other=np.zeros(3))
    with pytest.raises(PosekitError, match="no array 'bases'"):
        ShapeBases.load(tmp_path / "nobases.npz")
