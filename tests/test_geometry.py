"""posekit.geometry against known geometry, hand-computed cases, OpenCV and the real calibrations."""
import json
import warnings

import cv2
import numpy as np
import pytest
import scipy.io

from posekit.errors import PosekitError
from posekit.geometry.camera import _distort_with_jacobian          # its Jacobian drives undistortion
from posekit.geometry import (
    Camera,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    distort_normalized,
    euler_from_rotation_matrix,
    fold_radius_squared,
    is_rotation_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    orthographic_project,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_matrix_from_euler,
    similarity_procrustes,
    triangulate_cameras,
    triangulate_dlt,
    undistort_normalized,
    weak_perspective_project,
)

RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
PANOPTIC_DIST = [-0.324009, 0.0732398, -0.000601245, 0.000808154, 0.0311011]   # VGA camera 01_01


def elementary(axis: str, angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` (radians) about one coordinate axis, written out."""
    c, s = np.cos(angle), np.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis.lower()]


def random_rotations(rng, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def look_at(center, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    """World->camera R, t of a camera at ``center`` whose optical axis passes through ``target``."""
    center = np.asarray(center, float)
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    rot = np.stack([x, np.cross(z, x), z])
    return rot, -rot @ center


def make_rig(dist=(), radius=4000.0, n=4):
    """n cameras on a circle of ``radius`` mm at 1.5 m height, all looking at the origin."""
    cams = []
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False)):
        rot, t = look_at([radius * np.cos(angle), radius * np.sin(angle), 1500.0])
        K = [[1100.0 + 20 * i, 0, 960.0 + i], [0, 1090.0 + 10 * i, 540.0 - i], [0, 0, 1]]
        cams.append(Camera(K=K, R=rot, t=t, dist=dist, width=1920, height=1080, name=f"c{i}"))
    return cams


def opencv_project(cam: Camera, points):
    rvec = cv2.Rodrigues(cam.R)[0]
    out = cv2.projectPoints(np.asarray(points, float).reshape(-1, 1, 3), rvec, cam.t, cam.K, cam.dist)[0]
    return out.reshape(np.shape(points)[:-1] + (2,))


# ----------------------------------------------------------------------------- camera: projection

def test_project_hand_computed():
    cam = Camera(K=[[1000, 0, 320], [0, 900, 240], [0, 0, 1]], R=np.eye(3), t=[0, 0, 0])
    np.testing.assert_allclose(cam.project([1.0, 2.0, 10.0]), [420.0, 420.0])
    np.testing.assert_allclose(cam.project([[0.0, 0.0, 5.0]]), [[320.0, 240.0]])
    skewed = Camera(K=[[1000, 5, 320], [0, 900, 240], [0, 0, 1]], R=np.eye(3), t=[0, 0, 0])
    np.testing.assert_allclose(skewed.project([1.0, 2.0, 10.0]), [421.0, 420.0])
    # rotated and shifted: Xc = Rz90 @ (1, 0, 0) + (0, 0, 4) = (0, 1, 4) -> (320, 240 + 900/4)
    turned = Camera(K=[[1000, 0, 320], [0, 900, 240], [0, 0, 1]], R=RZ90, t=[0, 0, 4])
    np.testing.assert_allclose(turned.world_to_camera([1.0, 0.0, 0.0]), [0.0, 1.0, 4.0])
    np.testing.assert_allclose(turned.project([1.0, 0.0, 0.0]), [320.0, 465.0])


def test_center_projection_matrix_and_frames():
    cam = Camera(K=[[800, 0, 400], [0, 800, 300], [0, 0, 1]], R=RZ90, t=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(cam.center, [-2.0, 1.0, -3.0])        # -Rz90^T (1, 2, 3)
    np.testing.assert_allclose(cam.world_to_camera(cam.center), [0, 0, 0], atol=1e-12)
    expected_P = np.array([[0, -800, 400, 2000], [800, 0, 300, 2500], [0, 0, 1, 3]], float)
    np.testing.assert_allclose(cam.projection_matrix, expected_P)
    pts = np.random.default_rng(0).normal(size=(2, 5, 3)) + [0, 0, 10]
    np.testing.assert_allclose(cam.camera_to_world(cam.world_to_camera(pts)), pts, atol=1e-12)
    homogeneous = np.concatenate([pts, np.ones((2, 5, 1))], -1) @ expected_P.T
    np.testing.assert_allclose(cam.project(pts), homogeneous[..., :2] / homogeneous[..., 2:], atol=1e-9)


def test_points_on_or_behind_the_camera_have_no_image():
    cam = Camera(K=np.eye(3), R=np.eye(3), t=[0, 0, 0], dist=PANOPTIC_DIST)
    uv = cam.project([[0.1, 0.2, -3.0], [0.1, 0.2, 0.0], [np.nan, 0, 1], [0.1, 0.2, 2.0]])
    assert np.isnan(uv[:3]).all() and np.isfinite(uv[3]).all()


@pytest.mark.parametrize("dist", [
    [],
    [-0.21, 0.05, 0.001, -0.0007],
    [-0.28, 0.09, -0.0012, 0.0009, -0.015],
    [0.4, -0.1, 0.0015, -0.001, 0.02, 0.5, -0.05, 0.01],
])
def test_project_matches_opencv(dist):
    rng = np.random.default_rng(1)
    for cam in make_rig(dist):
        pts = rng.uniform(-800, 800, size=(40, 3)) + [0, 0, 900]
        ours = cam.project(pts)
        assert ((ours > 0) & (ours < [1920, 1080])).all()          # inside the image, not a far-off case
        np.testing.assert_allclose(ours, opencv_project(cam, pts), atol=1e-6, rtol=0)


def test_distortion_shapes_and_padding():
    cam = Camera(K=np.eye(3), R=np.eye(3), t=np.zeros((3, 1)), dist=[[0.1], [0.2], [0.0], [0.0]])
    np.testing.assert_array_equal(cam.dist, [0.1, 0.2, 0, 0, 0])
    assert Camera(K=np.eye(3), R=np.eye(3), t=[0, 0, 0], dist=np.zeros(8)).dist.shape == (8,)
    # hand case: k1 = 0.1 at (x, y) = (1, 0): r^2 = 1 -> x_d = 1.1;  p1 = 0.01 at (0, 1): y_d = 1 + 3 p1
    np.testing.assert_allclose(distort_normalized([1.0, 0.0], [0.1, 0, 0, 0]), [1.1, 0.0])
    np.testing.assert_allclose(distort_normalized([0.0, 1.0], [0, 0, 0.01, 0]), [0.0, 1.03])
    np.testing.assert_allclose(distort_normalized([[1.0, 0.0]], [0, 0, 0.01, 0.02]), [[1.06, 0.01]])


# ----------------------------------------------------------------------------- camera: undistortion

@pytest.mark.parametrize("dist", [PANOPTIC_DIST, [0.4, -0.1, 0.0015, -0.001, 0.02, 0.5, -0.05, 0.01]])
def test_undistort_inverts_distort(dist):
    grid = np.stack(np.meshgrid(np.linspace(-0.6, 0.6, 25), np.linspace(-0.45, 0.45, 19)), -1)
    back = undistort_normalized(distort_normalized(grid, dist), dist)
    np.testing.assert_allclose(back, grid, atol=1e-9, rtol=0)
    K = [[745.7, 1.5, 375.5], [0, 745.9, 226.0], [0, 0, 1]]                 # with skew
    cam = Camera(K=K, R=np.eye(3), t=[0, 0, 0], dist=dist)
    pixels = np.stack(np.meshgrid(np.linspace(0, 639, 17), np.linspace(0, 479, 13)), -1)
    np.testing.assert_allclose(cam.undistort_points(cam.distort_points(pixels)), pixels, atol=1e-9, rtol=0)
    np.testing.assert_allclose(cam.distort_points(cam.undistort_points(pixels)), pixels, atol=1e-9, rtol=0)
    np.testing.assert_allclose(cam.undistort_points(cam.distort_points(grid, pixels=False), pixels=False),
                               grid, atol=1e-9, rtol=0)


def test_distortion_jacobian_matches_finite_differences():
    dist = np.array([-0.3, 0.1, 0.02, -0.015, 0.01, 0.2, -0.05, 0.02])
    xy = np.random.default_rng(13).uniform(-0.6, 0.6, size=(20, 2))
    _, (jxx, jxy, jyy) = _distort_with_jacobian(xy, dist, jacobian=True)
    h = 1e-6
    for axis, (d_xd, d_yd) in enumerate([(jxx, jxy), (jxy, jyy)]):
        step = np.zeros(2)
        step[axis] = h
        forward = _distort_with_jacobian(xy + step, dist, jacobian=False)[0]
        backward = _distort_with_jacobian(xy - step, dist, jacobian=False)[0]
        central = (forward - backward) / (2 * h)
        np.testing.assert_allclose(central[:, 0], d_xd, atol=1e-8)
        np.testing.assert_allclose(central[:, 1], d_yd, atol=1e-8)


def test_undistort_agrees_with_opencv():
    cam = Camera(K=[[745.7, 0, 375.5], [0, 745.9, 226.0], [0, 0, 1]], R=np.eye(3), t=[0, 0, 0],
                 dist=PANOPTIC_DIST)
    pixels = np.stack(np.meshgrid(np.linspace(0, 639, 9), np.linspace(0, 479, 7)), -1).reshape(-1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)
    reference = cv2.undistortPoints(pixels.reshape(-1, 1, 2), cam.K, cam.dist, R=None, P=cam.K,
                                    criteria=criteria)
    np.testing.assert_allclose(cam.undistort_points(pixels), reference[:, 0], atol=1e-6, rtol=0)


def test_undistort_without_preimage_is_nan():
    # x_d = r (1 - 0.5 r^2) peaks at r = sqrt(2/3), x_d = 0.544: a distorted radius of 0.6 has no source
    out = undistort_normalized([[0.6, 0.0], [0.5, 0.0], [np.nan, 0.0]], [-0.5, 0, 0, 0, 0])
    assert np.isnan(out[0]).all() and np.isnan(out[2]).all()
    r = out[1, 0]
    assert r < np.sqrt(2 / 3) and abs(r * (1 - 0.5 * r * r) - 0.5) < 1e-12
    # radial factor 1 + 0.1 r^2 - 0.3 r^4 + 0.02 r^6 folds near r = 0.95 (distorted radius < 0.85): a
    # distorted point at radius 1.25 has only a preimage beyond the fold (|x| ~ 3.8), where the
    # lens model no longer describes the image — NaN, not that root
    assert np.isnan(undistort_normalized([1.1944, 0.3583], [0.1, -0.3, 0.01, 0, 0.02])).all()


def test_fold_radius_hand_cases_and_projection_beyond_it():
    assert fold_radius_squared([]) == np.inf
    assert fold_radius_squared(PANOPTIC_DIST) == np.inf                      # monotonic: no fold at all
    assert fold_radius_squared([-0.5, 0, 0, 0]) == pytest.approx(2 / 3)      # d/dr r(1 - r^2/2) = 0
    assert fold_radius_squared([0, 0, 0, 0, 0, 0.5, 0, 0]) == pytest.approx(2.0)   # r / (1 + r^2/2) peaks
    assert fold_radius_squared([0, 0, 0, 0, 0, -0.5, 0, 0]) == pytest.approx(2.0)  # pole of 1 / (1 - r^2/2)
    cam = Camera(K=[[500, 0, 320], [0, 500, 240], [0, 0, 1]], R=np.eye(3), t=[0, 0, 0], dist=[-0.5, 0, 0, 0])
    far_off_axis = np.array([[1.5, 0.0, 1.0]])           # r = 1.5 distorts to 1.5 (1 - 1.125) = -0.1875
    np.testing.assert_allclose(opencv_project(cam, far_off_axis), [[320 - 93.75, 240]])  # mirrored, in image
    assert np.isnan(cam.project(far_off_axis)).all()
    np.testing.assert_allclose(cam.project([[0.5, 0.0, 1.0]]), [[320 + 500 * 0.5 * (1 - 0.125), 240]])
    assert np.isnan(cam.distort_points([[1.5, 0.0]], pixels=False)).all()


def test_pixel_to_ray_passes_through_the_point():
    rot, t = look_at([2500.0, -3000.0, 1800.0], target=[100.0, 200.0, 300.0])
    cam = Camera(K=[[1100, 3.0, 960], [0, 1090, 540], [0, 0, 1]], R=rot, t=t, dist=PANOPTIC_DIST)
    pts = np.random.default_rng(2).uniform(-500, 500, size=(3, 4, 3))
    origins, directions = cam.pixel_to_ray(cam.project(pts))
    assert origins.shape == directions.shape == (3, 4, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0)
    to_point = pts - cam.center
    unit_to_point = to_point / np.linalg.norm(to_point, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.cross(directions, unit_to_point), 0, atol=1e-9)
    assert (np.sum(directions * to_point, axis=-1) > 0).all()
    np.testing.assert_allclose(origins, np.broadcast_to(cam.center, (3, 4, 3)))


# ----------------------------------------------------------------------------- camera: dictionaries

def test_from_dict_spellings_agree():
    rot, t = look_at([3.0, -2.0, 1.5])
    reference = Camera(K=[[1145.0, 0, 512.5], [0, 1143.8, 515.4], [0, 0, 1]], R=rot, t=t,
                       dist=[-0.2, 0.24, -0.0014, -0.001, -0.003], width=1000, height=1002, name="cam")
    spellings = [
        {"K": reference.K.tolist(), "R": rot.tolist(), "t": [[v] for v in t],
         "distCoef": reference.dist.tolist(), "resolution": [1000, 1002], "name": "cam"},
        {"fx": 1145.0, "fy": 1143.8, "cx": 512.5, "cy": 515.4, "rvec": cv2.Rodrigues(rot)[0].tolist(),
         "T": [3.0, -2.0, 1.5], "dist": reference.dist.tolist(), "width": 1000, "height": 1002,
         "name": "cam"},
        {"f": [[1145.0], [1143.8]], "c": [[512.5], [515.4]], "R": rot, "T": [[3.0], [-2.0], [1.5]],
         "k": [[-0.2], [0.24], [-0.003]], "p": [[-0.0014], [-0.001]], "w": 1000, "h": 1002, "name": "cam"},
        reference.to_dict(),
        json.loads(json.dumps(reference.to_dict())),
    ]
    for d in spellings:
        cam = Camera.from_dict(d)
        for attr in ("K", "R", "t", "dist"):
            np.testing.assert_allclose(getattr(cam, attr), getattr(reference, attr), atol=1e-12)
        assert (cam.width, cam.height, cam.name) == (1000, 1002, "cam")


def test_from_dict_rvec_hand_case_and_scale():
    cam = Camera.from_dict({"fx": 1, "fy": 1, "cx": 0, "cy": 0, "rvec": [0, 0, np.pi / 2], "t": [1, 2, 3]},
                           length_scale=10, name="a")
    np.testing.assert_allclose(cam.R, RZ90, atol=1e-15)
    np.testing.assert_allclose(cam.t, [10, 20, 30])
    assert cam.name == "a" and cam.width is None
    np.testing.assert_array_equal(cam.dist, np.zeros(5))


@pytest.mark.parametrize("change, field", [
    ({"K": [[1, 0, 0], [0, 1, 0]]}, "'K'"),
    ({"K": [[1, 0, 0], [0, 1, 0], [0, 0, 2]]}, "'K'"),
    ({"K": [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]}, "'K'"),
    ({"K": "abc"}, "'K'"),
    ({"R": np.eye(3) * 1.001}, "'R'"),
    ({"R": np.diag([1.0, 1.0, -1.0])}, "'R'"),
    ({"R": [[1, 0], [0, 1]]}, "'R'"),
    ({"t": [0, np.nan, 0]}, "'t'"),
    ({"t": [0, 0]}, "'t'"),
    ({"distCoef": [0.1] * 6}, "'distCoef'"),
    ({"rvec": [0, 0, 1]}, "'R' and 'rvec'"),
    ({"T": [1, 2, 3]}, "'t'.*'T'"),
    ({"width": -5}, "'width'"),
    ({"height": "tall"}, "'height'"),
])
def test_from_dict_errors_name_the_field(change, field):
    d = {"K": np.eye(3).tolist(), "R": np.eye(3).tolist(), "t": [0, 0, 1], "distCoef": [0] * 5}
    d.update(change)
    with pytest.raises(PosekitError, match=field):
        Camera.from_dict(d, where="calib.json")
    with pytest.raises(PosekitError, match="calib.json"):
        Camera.from_dict(d, where="calib.json")


def test_from_dict_missing_parts():
    with pytest.raises(PosekitError, match="intrinsics"):
        Camera.from_dict({"R": np.eye(3), "t": [0, 0, 0]})
    with pytest.raises(PosekitError, match="rotation"):
        Camera.from_dict({"K": np.eye(3), "t": [0, 0, 0]})
    with pytest.raises(PosekitError, match="position"):
        Camera.from_dict({"K": np.eye(3), "R": np.eye(3)})
    with pytest.raises(PosekitError, match="dict"):
        Camera.from_dict([1, 2, 3])
    with pytest.raises(PosekitError, match="points"):
        make_rig()[0].project(np.zeros((4, 2)))


# ----------------------------------------------------------------------------- simple camera models

def test_orthographic_and_weak_perspective_hand_cases():
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(orthographic_project(X), [[1, 2], [4, 5]])
    np.testing.assert_allclose(orthographic_project(X, RZ90), [[-2, 1], [-5, 4]])
    np.testing.assert_allclose(orthographic_project(X, RZ90[:2]), [[-2, 1], [-5, 4]])
    np.testing.assert_allclose(weak_perspective_project(X, 2.0, RZ90, [10, 20]), [[6, 22], [0, 28]])
    np.testing.assert_allclose(weak_perspective_project(X, 0.5), [[0.5, 1], [2, 2.5]])


def test_weak_perspective_batched_per_frame():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 5, 3))
    R = random_rotations(rng, 6)
    s = rng.uniform(0.5, 2, size=6)
    t = rng.normal(size=(6, 2))
    out = weak_perspective_project(X, s, R, t)
    assert out.shape == (6, 5, 2)
    for f in range(6):
        np.testing.assert_allclose(out[f], s[f] * (X[f] @ R[f].T)[:, :2] + t[f])
    with pytest.raises(PosekitError, match="det"):
        orthographic_project(X, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(PosekitError, match="orthonormal"):
        orthographic_project(X, 2 * np.eye(3))
    with pytest.raises(PosekitError, match="broadcast"):
        weak_perspective_project(X, np.ones(4))
    with pytest.raises(PosekitError, match="point set"):
        orthographic_project([1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- triangulation

@pytest.mark.parametrize("dist", [[], PANOPTIC_DIST])
def test_project_then_triangulate_recovers_points(dist):
    cams = make_rig(dist)
    pts = np.random.default_rng(4).uniform(-800, 800, size=(10, 17, 3))
    observed = np.stack([cam.project(pts) for cam in cams])                 # (V, 10, 17, 2)
    recovered = triangulate_cameras(observed, cams)
    assert recovered.shape == (10, 17, 3)
    np.testing.assert_allclose(recovered, pts, atol=1e-6, rtol=0)
    if dist:   # skipping the undistortion must then be measurably wrong
        assert np.abs(triangulate_cameras(observed, cams, undistort=False) - pts).max() > 1.0


def test_triangulate_dlt_batched_and_two_views():
    cams = make_rig()
    pts = np.random.default_rng(5).uniform(-500, 500, size=(7, 5, 3))
    P = np.stack([cam.projection_matrix for cam in cams])
    observed = np.stack([cam.project(pts, distort=False) for cam in cams])
    np.testing.assert_allclose(triangulate_dlt(observed, P), pts, atol=1e-6, rtol=0)
    np.testing.assert_allclose(triangulate_dlt(observed[:2], P[:2]), pts, atol=1e-6, rtol=0)
    assert triangulate_dlt(observed[:, :0], P).shape == (0, 5, 3)


def test_triangulate_matches_opencv_on_noisy_two_views():
    cams = make_rig(n=5)[::2]
    pts = np.random.default_rng(6).uniform(-500, 500, size=(30, 3))
    observed = np.stack([cam.project(pts) for cam in cams[:2]])
    observed += np.random.default_rng(7).normal(scale=2.0, size=observed.shape)
    P = np.stack([cam.projection_matrix for cam in cams[:2]])
    reference = cv2.triangulatePoints(P[0], P[1], observed[0].T, observed[1].T)
    reference = (reference[:3] / reference[3]).T
    ours = triangulate_dlt(observed, P)
    assert np.abs(ours - pts).max() > 1.0                                   # noise does move the answer
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)


def test_zero_weight_view_behind_camera_and_too_few_views():
    cams = make_rig(PANOPTIC_DIST)
    inside_rot, inside_t = look_at([0.0, 0.0, 0.0], target=[1.0, 0.0, 0.0])   # at the origin, facing +x
    cams.append(Camera(K=cams[0].K, R=inside_rot, t=inside_t, dist=PANOPTIC_DIST))
    pts = np.array([[-300.0, 100.0, 200.0], [250.0, -50.0, 100.0]])       # first one is behind the new camera
    observed = np.stack([cam.project(pts) for cam in cams])
    assert np.isnan(observed[-1, 0]).all() and np.isfinite(observed[-1, 1]).all()
    np.testing.assert_allclose(triangulate_cameras(observed, cams), pts, atol=1e-6, rtol=0)

    corrupted = observed.copy()
    corrupted[0] += 250.0                                                    # a wrong detection in view 0 ...
    weights = np.ones(observed.shape[:-1])
    assert np.abs(triangulate_cameras(corrupted, cams, weights) - pts).max() > 10
    weights[0] = 0.0                                                         # ... removed by its zero weight
    np.testing.assert_allclose(triangulate_cameras(corrupted, cams, weights), pts, atol=1e-6, rtol=0)
    weights[0] = 1e-9                                                        # ... or nearly so by a tiny one
    np.testing.assert_allclose(triangulate_cameras(corrupted, cams, weights), pts, atol=1e-3, rtol=0)

    few = np.zeros(observed.shape[:-1])
    few[2] = 1.0                                                             # one view only: undetermined
    few[:2, 1] = 0.7                                                         # point 1: two views
    out = triangulate_cameras(observed, cams, few)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], pts[1], atol=1e-6, rtol=0)


def test_views_sharing_a_centre_give_nan():
    first = make_rig()[0]
    turned, _ = look_at(first.center, target=[300.0, 100.0, 0.0])            # same centre, other direction
    second = Camera(K=first.K, R=turned, t=-turned @ first.center)
    pts = np.random.default_rng(14).uniform(-300, 300, size=(5, 3))
    observed = np.stack([first.project(pts), second.project(pts)])
    assert np.isfinite(observed).all()
    assert np.isnan(triangulate_cameras(observed, [first, second])).all()


def test_triangulate_errors():
    cams = make_rig()
    P = np.stack([cam.projection_matrix for cam in cams])
    with pytest.raises(PosekitError, match="view 2 is not a finite camera"):
        triangulate_dlt(np.zeros((4, 5, 2)), P * [[[1]], [[1]], [[0]], [[1]]])
    with pytest.raises(PosekitError, match="projections"):
        triangulate_dlt(np.zeros((4, 3, 2)), P[:, :2])
    with pytest.raises(PosekitError, match="points_2d"):
        triangulate_dlt(np.zeros((3, 5, 2)), P)
    with pytest.raises(PosekitError, match="weights"):
        triangulate_dlt(np.zeros((4, 5, 2)), P, weights=-np.ones((4, 5)))
    with pytest.raises(PosekitError, match="weights"):
        triangulate_dlt(np.zeros((4, 5, 2)), P, weights=np.ones((4, 3)))
    with pytest.raises(PosekitError, match="cameras"):
        triangulate_cameras(np.zeros((4, 5, 2)), [P[0]] * 4)


# ----------------------------------------------------------------------------- rotations

def test_ninety_degrees_about_z_in_every_form():
    np.testing.assert_allclose(axis_angle_to_matrix([0, 0, np.pi / 2]), RZ90, atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix([np.sqrt(0.5), 0, 0, np.sqrt(0.5)]), RZ90, atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix([2.0, 0, 0, 2.0]), RZ90, atol=1e-15)   # normalised
    np.testing.assert_allclose(rotation_matrix_from_euler([0, 0, 90], "xyz"), RZ90, atol=1e-15)
    np.testing.assert_allclose(rotation_matrix_from_euler([np.pi / 2, 0, 0], "ZYX", degrees=False), RZ90,
                               atol=1e-15)
    np.testing.assert_allclose(matrix_to_axis_angle(RZ90), [0, 0, np.pi / 2])
    np.testing.assert_allclose(matrix_to_quaternion(RZ90), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)])
    np.testing.assert_allclose(euler_from_rotation_matrix(RZ90, "ZYX"), [90, 0, 0], atol=1e-12)
    half = np.sqrt(0.5)
    np.testing.assert_allclose(axis_angle_to_quaternion([0, 0, np.pi / 2]), [half, 0, 0, half])
    np.testing.assert_allclose(quaternion_to_axis_angle([half, 0, 0, half]), [0, 0, np.pi / 2])
    # scalar first: (w, x, y, z) = (0, 1, 0, 0) is a half turn about x
    np.testing.assert_allclose(quaternion_to_matrix([0, 1, 0, 0]), np.diag([1, -1, -1]), atol=1e-15)
    np.testing.assert_allclose(RZ90 @ [1, 0, 0], [0, 1, 0])                 # acts on column vectors


ORDERS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "XYX", "ZXZ"]


@pytest.mark.parametrize("order", ORDERS + [o.lower() for o in ORDERS])
def test_euler_orders_are_explicit_products(order):
    rng = np.random.default_rng(8)
    angles = rng.uniform(-170, 170, size=(4, 3))
    angles[:, 1] = rng.uniform(10, 80, size=4)
    matrices = rotation_matrix_from_euler(angles.reshape(2, 2, 3), order).reshape(4, 3, 3)
    for a, m in zip(np.radians(angles), matrices):
        e = [elementary(axis, angle) for axis, angle in zip(order, a)]
        expected = e[0] @ e[1] @ e[2] if order.isupper() else e[2] @ e[1] @ e[0]
        np.testing.assert_allclose(m, expected, atol=1e-14)
    back = euler_from_rotation_matrix(matrices, order)
    np.testing.assert_allclose(rotation_matrix_from_euler(back, order), matrices, atol=1e-12)
    np.testing.assert_allclose(np.radians(euler_from_rotation_matrix(matrices, order)),
                               euler_from_rotation_matrix(matrices, order, degrees=False), atol=1e-14)


def test_bvh_channel_order():
    # BVH "Zrotation Xrotation Yrotation" with values (30, 45, 60): R = Rz(30) @ Rx(45) @ Ry(60)
    z, x, y = np.radians([30, 45, 60])
    expected = elementary("z", z) @ elementary("x", x) @ elementary("y", y)
    np.testing.assert_allclose(rotation_matrix_from_euler([30, 45, 60], "ZXY"), expected, atol=1e-14)
    np.testing.assert_allclose(euler_from_rotation_matrix(expected, "ZXY"), [30, 45, 60], atol=1e-10)


def test_gimbal_lock_is_silent_and_exact():
    m = rotation_matrix_from_euler([[25, 90, 40], [-10, -90, 5]], "ZYX")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        angles = euler_from_rotation_matrix(m, "ZYX")
    np.testing.assert_allclose(angles[:, 2], 0, atol=1e-12)
    np.testing.assert_allclose(rotation_matrix_from_euler(angles, "ZYX"), m, atol=1e-12)


def test_rotation_round_trips_batched():
    rng = np.random.default_rng(9)
    m = random_rotations(rng, 24).reshape(2, 3, 4, 3, 3)
    assert is_rotation_matrix(m).all() and is_rotation_matrix(m).shape == (2, 3, 4)
    q = matrix_to_quaternion(m)
    assert q.shape == (2, 3, 4, 4) and (q[..., 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0)
    np.testing.assert_allclose(quaternion_to_matrix(q), m, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(-q), m, atol=1e-12)
    v = matrix_to_axis_angle(m)
    assert (np.linalg.norm(v, axis=-1) <= np.pi + 1e-12).all()
    np.testing.assert_allclose(axis_angle_to_matrix(v), m, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_axis_angle(axis_angle_to_quaternion(v)), v, atol=1e-12)
    # Rodrigues' formula written out, as an independent check of axis-angle
    axis, angle = v[0, 0, 0] / np.linalg.norm(v[0, 0, 0]), np.linalg.norm(v[0, 0, 0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rodrigues = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    np.testing.assert_allclose(m[0, 0, 0], rodrigues, atol=1e-12)


def test_is_rotation_matrix_and_rotation_errors():
    assert not is_rotation_matrix(np.diag([1.0, 1.0, -1.0]))
    assert not is_rotation_matrix(np.eye(3) * (1 + 1e-5))
    assert not is_rotation_matrix([[1, 1e-4, 0], [0, 1, 0], [0, 0, 1]])      # det 1 but sheared
    assert is_rotation_matrix(np.eye(3) * (1 + 1e-8))
    assert not is_rotation_matrix(np.eye(2))
    with pytest.raises(PosekitError, match="order"):
        rotation_matrix_from_euler([0, 0, 0], "XYz")
    with pytest.raises(PosekitError, match="order"):
        rotation_matrix_from_euler([0, 0, 0], "XXY")
    with pytest.raises(PosekitError, match="angles"):
        rotation_matrix_from_euler([0, 0], "XYZ")
    with pytest.raises(PosekitError, match="quaternion"):
        quaternion_to_matrix([0, 0, 0, 0])
    with pytest.raises(PosekitError, match="not a rotation"):
        matrix_to_quaternion(np.stack([np.eye(3), np.diag([1.0, 1.0, -1.0])]))
    with pytest.raises(PosekitError, match="NaN"):
        axis_angle_to_matrix([np.nan, 0, 0])


# ----------------------------------------------------------------------------- procrustes

def test_procrustes_recovers_known_similarity():
    rng = np.random.default_rng(10)
    source = rng.normal(size=(17, 3)) * 300
    R = random_rotations(rng, 1)[0]
    target = 1.7 * source @ R.T + [100.0, -50.0, 2000.0]
    aligned, s, R_hat, t = similarity_procrustes(source, target)
    np.testing.assert_allclose(aligned, target, atol=1e-8)
    np.testing.assert_allclose(s, 1.7)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t, [100.0, -50.0, 2000.0], atol=1e-8)
    _, s_fixed, _, _ = similarity_procrustes(source, target, scale=False)
    assert s_fixed == 1.0


def test_procrustes_rejects_reflections():
    source = np.random.default_rng(11).normal(size=(12, 3))
    mirrored = source * [-1.0, 1.0, 1.0]
    aligned, _, R, _ = similarity_procrustes(source, mirrored)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    assert np.abs(aligned - mirrored).max() > 0.1


def test_procrustes_weights_drop_joints_and_batches():
    rng = np.random.default_rng(12)
    source = rng.normal(size=(4, 5, 10, 3))
    R = random_rotations(rng, 20).reshape(4, 5, 3, 3)
    target = 0.8 * source @ np.swapaxes(R, -1, -2) + rng.normal(size=(4, 5, 1, 3))
    target[..., 3, :] += 40.0                                                # one joint far off everywhere
    weights = np.ones(10)
    weights[3] = 0.0
    aligned, s, R_hat, t = similarity_procrustes(source, target, weights=weights)
    assert aligned.shape == (4, 5, 10, 3) and s.shape == (4, 5) and R_hat.shape == (4, 5, 3, 3)
    assert t.shape == (4, 5, 3)
    np.testing.assert_allclose(s, 0.8)
    np.testing.assert_allclose(R_hat, R, atol=1e-10)
    keep = weights > 0
    np.testing.assert_allclose(aligned[..., keep, :], target[..., keep, :], atol=1e-10)
    single = similarity_procrustes(source[2, 3], target[2, 3], weights=weights)
    np.testing.assert_allclose(single[2], R_hat[2, 3], atol=1e-12)
    unweighted = similarity_procrustes(source, target)[1]
    assert np.abs(unweighted - 0.8).max() > 1e-3


# ----------------------------------------------------------------------------- real calibrations

def _panoptic(shared_real):
    folder = shared_real / "panoptic_body3d" / "160906_band1"
    calibration = json.loads((folder / "calibration_160906_band1.json").read_text())
    scene = json.loads((folder / "hdPose3d_stage1_coco19" / "body3DScene_00000168.json").read_text())
    joints = np.concatenate([np.reshape(body["joints19"], (-1, 4)) for body in scene["bodies"]])
    return calibration["cameras"], joints[joints[:, 3] > 0, :3]              # centimetres


def test_panoptic_calibration_projects_joints_into_hd_images(shared_real):
    entries, joints = _panoptic(shared_real)
    cameras = [Camera.from_dict(entry, where="calibration_160906_band1.json") for entry in entries]
    assert len(cameras) == 520
    hd = [cam for cam, entry in zip(cameras, entries) if entry["type"] == "hd"]
    assert len(hd) == 31 and all((cam.width, cam.height) == (1920, 1080) for cam in hd)
    pixels = np.stack([cam.project(joints) for cam in hd])
    inside = ((pixels >= 0) & (pixels < [1920, 1080])).all(-1)
    assert inside.mean() > 0.8 and inside.sum(0).min() >= 10          # every joint seen by many HD cameras
    centers = np.stack([cam.center for cam in hd])       # on the dome, 2.5-4 m from its centre, above floor
    distances = np.linalg.norm(centers, axis=1)
    assert (distances > 250).all() and (distances < 400).all() and (centers[:, 1] < 0).all()   # y points down
    for cam in hd[:5] + [c for c, e in zip(cameras, entries) if e["type"] == "vga"][:5]:
        np.testing.assert_allclose(cam.project(joints), opencv_project(cam, joints), atol=1e-6, rtol=0)


def test_panoptic_every_camera_undistorts_its_whole_image(shared_real):
    entries, _ = _panoptic(shared_real)
    for entry in entries:
        cam = Camera.from_dict(entry)
        grid = np.stack(np.meshgrid(np.linspace(0, cam.width - 1, 9), np.linspace(0, cam.height - 1, 9)), -1)
        ideal = cam.undistort_points(grid)
        assert np.isfinite(ideal).all(), entry["name"]
        np.testing.assert_allclose(cam.distort_points(ideal), grid, atol=1e-9, rtol=0)


def test_panoptic_triangulation_round_trip(shared_real):
    entries, joints = _panoptic(shared_real)
    hd = [Camera.from_dict(entry, length_scale=10) for entry in entries if entry["type"] == "hd"]
    joints_mm = joints * 10
    observed = np.stack([cam.project(joints_mm) for cam in hd])
    np.testing.assert_allclose(triangulate_cameras(observed, hd), joints_mm, atol=1e-6, rtol=0)
    confidence = ((observed >= 0) & (observed < [1920, 1080])).all(-1).astype(float)   # only in-image views
    np.testing.assert_allclose(triangulate_cameras(observed, hd, confidence), joints_mm, atol=1e-6, rtol=0)


def test_campus_calibration_T_is_the_camera_centre(shared_real):
    folder = shared_real / "campus"
    calibration = json.loads((folder / "calibration_campus.json").read_text())
    cameras = [Camera.from_dict(entry, length_scale=1e-3, name=key) for key, entry in calibration.items()]
    assert [cam.name for cam in cameras] == ["0", "1", "2"]
    for cam, entry in zip(cameras, calibration.values()):
        np.testing.assert_allclose(cam.center, np.ravel(entry["T"]) / 1000, atol=1e-12)
    ground_truth = scipy.io.loadmat(folder / "actorsGT.mat")
    actor3d, actor2d = ground_truth["actor3D"][0, 0], ground_truth["actor2D"][0, 0]      # actor 0, metres
    for frame in range(actor3d.shape[0]):
        joints = actor3d[frame, 0]
        for index, cam in enumerate(cameras):
            annotated = actor2d[frame, 0][0, index]
            error = np.abs(cam.project(joints) - annotated)
            if annotated.dtype.kind == "f":
                assert error.max() < 1e-6                                   # this view's 2D is a projection
            assert error.max() < 3.0                                        # integer-pixel annotation
    observed = np.stack([cam.project(actor3d[0, 0]) for cam in cameras])
    np.testing.assert_allclose(triangulate_cameras(observed, cameras), actor3d[0, 0], atol=1e-9)
