"""Synthetic engine, core: the ray-cast rasteriser against hand geometry and brute-force point tests, the
body model's keypoints, procedural variation of motion, and posture templates / classifier."""
import numpy as np
import pytest

from posekit.data.synthetic.body import (HEAD_LANDMARK_DIRECTIONS, PARTS, SURFACE_INSET, BodyShape,
                                         body_keypoints, build_body, keypoint_recipes)
from posekit.data.synthetic.motion import (UP, apply_variation, bone_lengths, load_mocap_library, mirror,
                                           perturb_joint_angles, rotate_about_vertical, sample_bone_scales,
                                           sample_joint_perturbations, sample_variation, scale_bones, trial_of)
from posekit.data.synthetic.postures import (JOINT_LIMITS, POSTURES, classify_posture, neutral_pose,
                                             pose_from_angles, posture_features, sample_posture)
from posekit.data.synthetic.render import Raster, keypoint_visibility
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, convert_keypoints, get_skeleton, register_skeleton

CMU = get_skeleton("cmu_mocap")


def _camera(size=65, focal=100.0):
    """Pixel (32, 32) looks straight down the optical axis."""
    return np.array([[focal, 0.0, 32.0], [0.0, focal, 32.0], [0.0, 0.0, 1.0]]), size


def _angle(u, v):
    return np.degrees(np.arccos(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


# ------------------------------------------------------------------------------------ rasteriser

def test_depth_of_centre_pixel_by_hand():
    K, size = _camera()
    for draw, depth, normal in [
        (lambda r: r.round_cone([0, 0, 1000], [0, 0, 1000], 100, 100, 7), 900.0, (0, 0, -1)),     # sphere
        (lambda r: r.round_cone([-300, 0, 1000], [300, 0, 1000], 50, 50, 7), 950.0, (0, 0, -1)),  # capsule
        (lambda r: r.ellipsoid([0, 0, 1000], np.eye(3), [100, 50, 200], 7), 800.0, (0, 0, -1)),
        (lambda r: r.box([0, 0, 1000], np.eye(3), [100, 50, 30], 7), 970.0, (0, 0, -1)),
    ]:
        raster = Raster(K, size, size)
        draw(raster)
        raster.draw()
        assert raster.ids[32, 32] == 7
        assert raster.depth[32, 32] == pytest.approx(depth, abs=1e-9)
        np.testing.assert_allclose(raster.normal[32, 32], normal, atol=1e-9)


def test_sphere_depth_and_silhouette_match_the_quadratic():
    K, size = _camera()
    raster = Raster(K, size, size)
    center, radius = np.array([40.0, -30.0, 800.0]), 120.0
    raster.round_cone(center, center, radius, radius, 3)
    raster.draw()
    for v, u in [(32, 32), (20, 40), (10, 50), (0, 64), (45, 20)]:
        ray = np.array([(u - 32) / 100.0, (v - 32) / 100.0, 1.0])
        roots = np.roots([ray @ ray, -2 * ray @ center, center @ center - radius ** 2])
        real = roots[np.abs(roots.imag) < 1e-9].real
        if real.size:
            assert raster.depth[v, u] == pytest.approx(real.min(), rel=1e-9)
            np.testing.assert_allclose(raster.normal[v, u], (real.min() * ray - center) / radius, atol=1e-9)
        else:
            assert raster.ids[v, u] == -1 and np.isinf(raster.depth[v, u])


def _first_inside(ray, inside, t_min=500.0, t_max=1700.0):
    """First ray parameter where ``inside`` holds: 1 mm steps, then bisection (None if never)."""
    ts = np.arange(t_min, t_max, 1.0)
    hits = inside(ts[:, None] * ray)
    if not hits.any():
        return None
    hi = ts[np.argmax(hits)]
    lo = hi - 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if inside((mid * ray)[None])[0]:
            hi = mid
        else:
            lo = mid
    return hi


def test_round_cones_ellipsoids_and_boxes_against_brute_force_point_tests():
    """The convex hull of two balls is the union of balls centred on the segment with linearly
    interpolated radii; ellipsoid and box membership are direct. March each ray to its first inside
    point and compare with the rasteriser's depth."""
    rng = np.random.default_rng(0)
    K, size = _camera()
    s = np.linspace(0.0, 1.0, 401)
    checked = 0
    for trial in range(4):
        a = rng.uniform([-150, -150, 900], [150, 150, 1300])
        b = rng.uniform([-150, -150, 900], [150, 150, 1300])
        r1, r2 = rng.uniform(30, 110, 2)
        axes = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        axes[:, 2] *= np.sign(np.linalg.det(axes))
        center = rng.uniform([-100, -100, 1000], [100, 100, 1200])
        radii = rng.uniform(40, 150, 3)
        shapes = [
            (lambda r: r.round_cone(a, b, r1, r2, 1),
             lambda p, grow=0.0: (np.linalg.norm(p[:, None, :] - (a + s[:, None] * (b - a))[None], axis=2)
                                  <= r1 + s * (r2 - r1) + grow).any(axis=1)),
            (lambda r: r.ellipsoid(center, axes, radii, 1),
             lambda p, grow=0.0: np.sum(((p - center) @ axes / (radii + grow)) ** 2, axis=1) <= 1.0),
            (lambda r: r.box(center, axes, radii, 1),
             lambda p, grow=0.0: (np.abs((p - center) @ axes) <= radii + grow).all(axis=1)),
        ]
        for draw, inside in shapes:
            raster = Raster(K, size, size)
            draw(raster)
            raster.draw()
            covered = np.argwhere(raster.ids == 1)
            pixels = np.concatenate([covered[rng.choice(len(covered), 5)], rng.integers(0, size, (3, 2))])
            for v, u in pixels:
                ray = np.array([(u - 32) / 100.0, (v - 32) / 100.0, 1.0])
                expected = _first_inside(ray, inside)
                if expected is not None:
                    assert raster.ids[v, u] == 1
                    assert raster.depth[v, u] == pytest.approx(expected, abs=0.05)
                    checked += 1
                elif raster.ids[v, u] == 1:          # a grazing ray: its chord is shorter than the 1 mm step
                    assert inside((raster.depth[v, u] * ray)[None], grow=1.0)[0]
                else:
                    assert np.isinf(raster.depth[v, u])
    assert checked >= 4 * 3 * 5


def test_depth_test_keeps_the_nearer_surface_per_pixel():
    K, size = _camera()
    raster = Raster(K, size, size)
    raster.round_cone([0, 0, 1000], [0, 0, 1000], 150, 150, 1)      # big sphere behind
    raster.round_cone([60, 0, 700], [60, 0, 700], 50, 50, 2)        # small sphere in front, off-centre
    raster.draw()
    assert raster.ids[32, 32] == 1 and raster.depth[32, 32] == pytest.approx(850.0)
    u = 32 + round(100 * 60 / 700)
    assert raster.ids[32, u] == 2 and raster.depth[32, u] < 700
    assert raster.ids[32, 20] == 1 and raster.ids[0, 0] == -1


def test_keypoint_visibility_rule():
    K, size = _camera()
    raster = Raster(K, size, size)
    raster.box([0, 0, 1000], np.eye(3), [50, 50, 50], 4)
    raster.draw()
    pixels = np.array([[32.0, 32.0], [32.0, 32.0], [32.0, 32.0], [5.0, 5.0], [70.0, 32.0], [32.0, 32.0]])
    depths = np.array([1030.0, 1100.0, 1100.0, 1100.0, 900.0, -5.0])
    own = [np.array([], int), np.array([], int), np.array([4]), np.array([], int), np.array([], int),
           np.array([], int)]
    flags = keypoint_visibility(raster, pixels, depths, own, np.full(6, 100.0))
    # 950 >= 1030 - 100 visible; 950 < 1100 - 100 hidden; own surface visible; nothing in front;
    # outside the image; behind the camera
    assert flags.tolist() == [2, 1, 2, 2, 0, 0]


def test_camera_with_distortion_is_refused():
    K, size = _camera()
    with pytest.raises(PosekitError, match="distortion"):
        Raster(K, size, size, dist=[0.1, 0, 0, 0, 0])


# ------------------------------------------------------------------------------------ body and keypoints

def test_joint_keypoints_are_the_cmu_joints_and_face_points_lie_under_the_head_surface():
    pose = neutral_pose()
    body = build_body(pose)
    coco = get_skeleton("coco17")
    points = body_keypoints(pose, body, "coco17")
    for name, joint in (("left_wrist", "LeftHand"), ("right_knee", "RightLeg"), ("left_hip", "LeftUpLeg"),
                        ("right_shoulder", "RightArm"), ("left_ankle", "LeftFoot")):
        np.testing.assert_array_equal(points[coco.index(name)], pose[CMU.index(joint)])
    local = (points - body.head_center) @ body.head_axes / body.head_radii      # unit-sphere coordinates
    for name in HEAD_LANDMARK_DIRECTIONS:
        if name in coco.joints:
            p = local[coco.index(name)]
            assert np.linalg.norm(p) < 1.0
            # moving SURFACE_INSET outwards along the normal reaches the surface (the normal here and at
            # the surface differ by a hair: 1e-4 of the unit sphere is about 10 micrometres)
            normal = body.head_axes @ (p / body.head_radii)
            outside = points[coco.index(name)] + SURFACE_INSET * normal / np.linalg.norm(normal)
            assert np.linalg.norm((outside - body.head_center) @ body.head_axes / body.head_radii) == \
                pytest.approx(1.0, abs=1e-4)
    # neutral pose faces +z with its left at +x: the face is in front, the left eye on the left
    nose, left_eye, right_eye = (points[coco.index(n)] for n in ("nose", "left_eye", "right_eye"))
    assert nose[2] > body.head_center[2] + 50
    assert left_eye[0] > body.head_center[0] > right_eye[0]


def test_keypoints_of_any_skeleton_by_mapping_or_by_name():
    pose = neutral_pose()
    body = build_body(pose)
    mpii = get_skeleton("mpii16")
    mpii_points = body_keypoints(pose, body, "mpii16")
    np.testing.assert_array_equal(mpii_points[mpii.index("thorax")], pose[CMU.index("Neck")])
    assert mpii_points[mpii.index("head_top")][1] > pose[CMU.index("Head_End")][1]    # on the skull top
    h36m_points = body_keypoints(pose, body, "h36m17")
    expected, _ = convert_keypoints(pose, None, "cmu_mocap", "h36m17")
    np.testing.assert_array_equal(h36m_points, expected)
    custom = register_skeleton(Skeleton(name="synthetic_test_rig", joints=("nose", "left_wrist", "LeftFoot")))
    points = body_keypoints(pose, body, custom.name)
    np.testing.assert_array_equal(points[1], pose[CMU.index("LeftHand")])
    np.testing.assert_array_equal(points[2], pose[CMU.index("LeftFoot")])
    register_skeleton(Skeleton(name="synthetic_bad_rig", joints=("tail_tip",)))
    with pytest.raises(PosekitError, match="tail_tip"):
        keypoint_recipes("synthetic_bad_rig")


def test_body_scales_with_the_skeleton_and_shape():
    pose = neutral_pose()
    small, big = build_body(pose, BodyShape(girth=0.9)), build_body(pose * 1.1, BodyShape(girth=1.1))
    thigh = PARTS.index("left_thigh")
    # radii follow the bone length (x 1.1) and the girth (1.1 / 0.9)
    assert big.primitives[thigh].r1 == pytest.approx(small.primitives[thigh].r1 * 1.1 * 1.1 / 0.9)
    with pytest.raises(PosekitError, match="finite"):
        build_body(np.full_like(pose, np.nan))
    with pytest.raises(PosekitError, match="38, 3"):
        build_body(pose[:10])


# ------------------------------------------------------------------------------------ motion variation

def test_bone_scaling_keeps_directions_and_scales_lengths():
    rng = np.random.default_rng(1)
    pose = neutral_pose()
    factors = sample_bone_scales(rng)
    np.testing.assert_array_equal(factors, factors[CMU.flip_indices])          # left = right
    assert 0.85 * 0.92 <= factors.min() and factors.max() <= 1.15 * 1.08
    scaled = scale_bones(pose, factors)
    parents = np.array(CMU.parents)
    before, after = bone_lengths(pose), bone_lengths(scaled)
    np.testing.assert_allclose(after, before * np.where(parents >= 0, factors, 0), atol=1e-9)
    for j, p in enumerate(parents):
        if p >= 0 and before[j] > 0:
            assert _angle(pose[j] - pose[p], scaled[j] - scaled[p]) < 1e-5


def test_joint_perturbations_keep_bone_lengths_and_change_angles():
    rng = np.random.default_rng(2)
    clip = np.stack([rotate_about_vertical(neutral_pose(), a) for a in np.linspace(0, 2, 5)])
    perturbed = perturb_joint_angles(clip, sample_joint_perturbations(rng, 6.0))
    np.testing.assert_allclose(bone_lengths(perturbed), bone_lengths(clip), atol=1e-9)
    assert np.abs(perturbed - clip).max() > 20.0
    # the perturbation is fixed in the pelvis frame: undoing the body's turn gives the same pose
    unturned = np.stack([rotate_about_vertical(p, -a) for p, a in zip(perturbed, np.linspace(0, 2, 5))])
    np.testing.assert_allclose(unturned - unturned[:, :1], np.broadcast_to(unturned[0] - unturned[0, :1],
                                                                           unturned.shape), atol=1e-9)


def _left_side_is_left(pose) -> bool:
    """Whether the joints labelled left are on the person's left: left = up x forward, with forward
    from the heels to the toes."""
    up = pose[CMU.index("Neck")] - pose[CMU.index("Hips")]
    forward = (pose[CMU.index("LeftToeBase_End")] + pose[CMU.index("RightToeBase_End")]
               - pose[CMU.index("LeftFoot")] - pose[CMU.index("RightFoot")])
    left = np.cross(up, forward)
    return bool((pose[CMU.index("LeftUpLeg")] - pose[CMU.index("RightUpLeg")]) @ left > 0)


def test_mirroring_reflects_and_swaps_left_right_labels():
    angles = {"left_shoulder_flexion": 170.0, "right_elbow_flexion": 90.0}
    pose = rotate_about_vertical(pose_from_angles(angles), 0.7)
    mirrored = mirror(pose)
    assert _left_side_is_left(pose) and _left_side_is_left(mirrored)
    reflected = pose * np.array([-1.0, 1.0, 1.0])
    assert not _left_side_is_left(reflected)             # a reflection without relabelling is wrong
    np.testing.assert_allclose(mirror(mirrored), pose, atol=1e-12)
    # the raised left arm becomes a raised right arm, the bent right elbow a bent left elbow
    features, mirrored_features = posture_features(pose), posture_features(mirrored)
    assert features["left_arm_elevation"] > 150 and mirrored_features["right_arm_elevation"] > 150
    assert mirrored_features["left_elbow_flexion"] == pytest.approx(features["right_elbow_flexion"])


def test_variation_of_a_real_clip(test_data):
    motions = load_mocap_library(test_data / "mocap")
    assert [(m.meta["trial"], m.meta["action"], m.meta["format"]) for m in motions] == \
        [("01_01", "jump", "asf/amc"), ("02_01", "walk", "asf/amc")]
    walk = motions[1].positions
    rng = np.random.default_rng(3)
    variation = sample_variation(rng)
    varied = apply_variation(walk, variation)
    lengths = bone_lengths(varied)
    np.testing.assert_allclose(lengths, lengths[:1].repeat(len(lengths), 0), atol=1e-6)   # rigid bones
    leg = CMU.indices(["LeftLeg", "LeftFoot"])
    ratio = lengths[0, leg].sum() / bone_lengths(walk)[0, leg].sum()
    # the floor stays under the feet: the lowest toe height scales with the legs
    toes = CMU.indices(["LeftToeBase_End", "RightToeBase_End"])
    assert varied[:, toes, 1].min() == pytest.approx(walk[:, toes, 1].min() * ratio, abs=15.0)
    assert trial_of("x/02_01_first60.amc") == "02_01" and trial_of("walk.bvh") is None


# ------------------------------------------------------------------------------------ postures

def test_single_joint_angles_by_hand():
    neutral = neutral_pose()
    bent = pose_from_angles({"left_knee_flexion": 90.0})
    hip, knee, ankle = (CMU.index(n) for n in ("LeftUpLeg", "LeftLeg", "LeftFoot"))
    # the neutral knee is 3.4 degrees off straight (knees slightly inward), so 90 +- 4
    assert _angle(bent[knee] - bent[hip], bent[ankle] - bent[knee]) == pytest.approx(90.0, abs=4.0)
    assert bent[ankle][2] < neutral[ankle][2] - 300          # the foot went backwards
    arm, elbow = CMU.index("LeftArm"), CMU.index("LeftForeArm")
    forward = pose_from_angles({"left_shoulder_flexion": 90.0})
    assert _angle(forward[elbow] - forward[arm], [0, 0, 1]) < 7.0
    sideways = pose_from_angles({"left_shoulder_abduction": 90.0})
    assert _angle(sideways[elbow] - sideways[arm], [1, 0, 0]) < 7.0
    lying = pose_from_angles({"pelvis_pitch": -90.0})
    assert _angle(lying[CMU.index("Neck")] - lying[CMU.index("Hips")], UP) == pytest.approx(90.0, abs=5)
    with pytest.raises(PosekitError, match="unknown angle"):
        pose_from_angles({"left_knee": 3})


def test_posture_templates_are_classified_as_intended_within_joint_limits():
    rng = np.random.default_rng(4)
    coco = get_skeleton("coco17")
    for posture in POSTURES:
        for _ in range(60):
            pose, angles = sample_posture(posture, rng)
            assert classify_posture(pose) == posture
            turned = mirror(rotate_about_vertical(pose, rng.uniform(0, 6.3)))
            assert classify_posture(turned) == posture
            points = body_keypoints(pose, build_body(pose), "coco17")
            assert classify_posture(points, coco) == posture
            for name, value in angles.items():
                key = name.split("_", 1)[1] if name.startswith(("left_", "right_")) else name
                if key in JOINT_LIMITS:
                    assert JOINT_LIMITS[key][0] <= value <= JOINT_LIMITS[key][1]
            for side in ("Left", "Right"):
                hip, knee, ankle = (pose[CMU.index(side + n)] for n in ("UpLeg", "Leg", "Foot"))
                assert _angle(knee - hip, ankle - knee) <= 150.0 + 4.0
                shoulder, elbow, wrist = (pose[CMU.index(side + n)] for n in ("Arm", "ForeArm", "Hand"))
                assert _angle(elbow - shoulder, wrist - elbow) <= 150.0 + 8.0


def test_classifier_on_real_walking_and_batches(test_data):
    walk = load_mocap_library(test_data / "mocap")[1].positions
    labels = classify_posture(walk)
    assert labels.shape == (len(walk),)
    assert np.mean(labels == "stand") > 0.9
    with pytest.raises(PosekitError, match="expected 3D joints"):
        classify_posture(walk[0, :5])
