"""Motion-capture readers: hand-computed kinematics, the real CMU files (BVH against ASF/AMC of the
same trial), the Akhter NRSfM sequences, clear errors, and fuzzing that lets only PosekitError out."""
import re
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.io import savemat

from posekit.data.mocap import (CMU_UNITS_TO_MM, asf_amc_positions, bvh_positions, is_synthetic_tpose,
                                read_amc, read_asf, read_bvh, read_mocap, read_nrsfm_mat,
                                rebuild_bvh_offsets)
from posekit.errors import PosekitError
from posekit.skeletons import convert_keypoints, get_skeleton

# ------------------------------------------------------------------------------ hand-made files

# Rz(90) maps x->y, y->-x; Rx(90) maps y->z, z->-y; Ry(90) maps z->x, x->-z (right-handed,
# column vectors). Every expected position below is worked out with these three facts.

ORDER_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition {order}
  JOINT Tip
  {
    OFFSET 0 1 0
    CHANNELS 0
    End Site
    {
      OFFSET 0 1 0
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.5
0 0 0 {angles}
"""


def _order_bvh(order, angles):
    return ORDER_BVH.replace("{order}", order).replace("{angles}", angles)


@pytest.mark.parametrize("order, angles, tip", [
    # R = Rz(90) @ Ry(0) @ Rx(90): Rx takes (0,1,0) to (0,0,1), Rz leaves it
    ("Zrotation Yrotation Xrotation", "90 0 90", (0, 0, 1)),
    # R = Rx(90) @ Ry(0) @ Rz(90): Rz takes (0,1,0) to (-1,0,0), Rx leaves it
    ("Xrotation Yrotation Zrotation", "90 0 90", (-1, 0, 0)),
    # same angles listed Y first: R = Ry(0) @ Rz(90) @ Rx(90) = first case
    ("Yrotation Zrotation Xrotation", "0 90 90", (0, 0, 1)),
])
def test_bvh_channels_are_intrinsic_in_listed_order(tmp_path, order, angles, tip):
    path = tmp_path / "order.bvh"
    path.write_text(_order_bvh(order, angles))
    positions = bvh_positions(read_bvh(path), units_to_mm=1.0)
    np.testing.assert_allclose(positions[0, 1], tip, atol=1e-12)
    np.testing.assert_allclose(positions[0, 2], 2 * np.array(tip), atol=1e-12)


CHAIN_BVH = (
    "# a two-joint chain\r\n"
    "HIERARCHY\r\n"
    "ROOT Hips   # rotations listed before positions\r\n"
    "{\r\n"
    "\tOFFSET 1 2 3\r\n"
    "\tCHANNELS 6 Zrotation Xposition Yposition Zposition Yrotation Xrotation\r\n"
    "\tJOINT Chest\r\n"
    "\t{ OFFSET 0 2 0\r\n"
    "\t  CHANNELS 4 Xposition Zrotation Yrotation Xrotation\r\n"
    "\t  End Site\r\n"
    "\t  {\r\n"
    "\t\tOFFSET 0 0 3\r\n"
    "\t  }\r\n"
    "\t}\r\n"
    "}\r\n"
    "MOTION\r\n"
    "Frames: 2\r\n"
    "Frame Time: 0.04\r\n"
    "0 10 20 30 0 0   0 0 0 0\r\n"
    "# a comment between frames\r\n"
    "90 10 20 30 0 0   1 0 0 90\r\n")


def test_bvh_chain_positions_by_hand(tmp_path):
    path = tmp_path / "chain.bvh"
    path.write_bytes(CHAIN_BVH.encode())
    motion = read_bvh(path)
    assert motion.names == ("Hips", "Chest") and motion.parents == (-1, 0)
    assert motion.channels[1] == ("Xposition", "Zrotation", "Yrotation", "Xrotation")
    assert motion.point_names == ("Hips", "Chest", "Chest_End") and motion.fps == 25.0
    positions = bvh_positions(motion, units_to_mm=1.0)
    # frame 0: root at OFFSET + translation = (11, 22, 33), nothing rotated
    np.testing.assert_allclose(positions[0], [[11, 22, 33], [11, 24, 33], [11, 24, 36]], atol=1e-12)
    # frame 1: root Rz(90); Chest local (0,2,0)+(1,0,0) -> Rz(90) -> (-2,1,0);
    # Chest turns Rz(90) @ Rx(90): end offset (0,0,3) -> Rx -> (0,-3,0) -> Rz -> (3,0,0)
    np.testing.assert_allclose(positions[1], [[11, 22, 33], [9, 23, 33], [12, 23, 33]], atol=1e-12)
    assert bvh_positions(motion, include_end_sites=False, units_to_mm=1.0).shape == (2, 2, 3)
    np.testing.assert_allclose(bvh_positions(motion, units_to_mm=25.4), positions * 25.4)


ASF_TEXT = """# hand-made skeleton
:version 1.10
:name test
:units
  mass 1.0
  length {length}
  angle {angle}
:documentation
  free text, ignored
:root
   order TX TY TZ RZ RY RX
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name arm
     direction 1 0 0
     length 2
     axis 0 0 {quarter} XYZ
    dof rx
    limits (-180.0 180.0)
  end
  begin
     id 2
     name hand
     direction 1 0 0
     length 1
     axis 0 0 0 XYZ
    dof rz rx
    limits (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 3
     name stub
     direction 0 2 0
     length 1
     axis 0 0 0 XYZ
  end
:hierarchy
  begin
    root arm stub
    arm hand
  end
"""

AMC_TEXT = """:FULLY-SPECIFIED
:{unit}
1
root 0 0 0 0 0 0
arm {q}
hand 0 0
2
root 1 2 3 0 0 0
arm 0
hand {q} {q}
3
root 0 0 0 {q} 0 {q}
arm 0
stub
hand 0 0
"""

# rows: root, arm end, hand end, stub end
ASF_EXPECTED = np.array([
    # arm: C = Rz(90), M = Rx(90): C M C^-1 turns 90 degrees about C x = y, so (2,0,0) -> (0,0,-2);
    # hand has no rotation of its own and follows the arm; stub (unit direction (0,1,0)) stays
    [[0, 0, 0], [0, 0, -2], [0, 0, -3], [0, 1, 0]],
    # root moved to (1,2,3); hand "dof rz rx": Rz(90) first, then Rx(90): (1,0,0) -> (0,1,0) -> (0,0,1)
    [[1, 2, 3], [3, 2, 3], [3, 2, 4], [1, 3, 3]],
    # root "order ... RZ RY RX": M = Rx(90) @ Rz(90): (2,0,0) -> (0,2,0) -> (0,0,2); (0,1,0) -> (-1,0,0)
    [[0, 0, 0], [0, 0, 2], [0, 0, 3], [-1, 0, 0]],
], dtype=float)


def _write_asf_amc(tmp_path, angle="deg", length="1.0"):
    quarter = "90" if angle == "deg" else repr(np.pi / 2)
    asf = tmp_path / "test.asf"
    asf.write_text(ASF_TEXT.format(length=length, angle=angle, quarter=quarter))
    amc = tmp_path / "test.amc"
    amc.write_text(AMC_TEXT.format(unit="DEGREES" if angle == "deg" else "RADIANS", q=quarter))
    return asf, amc


@pytest.mark.parametrize("angle", ["deg", "rad"])
def test_asf_amc_positions_by_hand(tmp_path, angle):
    asf_path, amc_path = _write_asf_amc(tmp_path, angle)
    asf = read_asf(asf_path)
    assert asf.point_names == ("root", "arm", "hand", "stub")
    assert asf.root_order == ("tx", "ty", "tz", "rz", "ry", "rx") and asf.bones[1].dofs == ("rz", "rx")
    amc = read_amc(amc_path, asf)
    assert amc.frame_numbers.tolist() == [1, 2, 3]
    np.testing.assert_allclose(asf_amc_positions(asf, amc, units_to_mm=1.0), ASF_EXPECTED, atol=1e-12)


def test_asf_length_unit_sets_default_millimetres(tmp_path):
    asf_path, amc_path = _write_asf_amc(tmp_path, length="0.5")
    asf = read_asf(asf_path)
    assert asf.units_to_mm == pytest.approx(50.8)          # one unit = 1 / 0.5 inch
    np.testing.assert_allclose(asf_amc_positions(asf, read_amc(amc_path, asf)), ASF_EXPECTED * 50.8,
                               atol=1e-9)
    motion = read_mocap(amc_path, asf=asf_path, skeleton=None)
    assert motion.skeleton.joints == ("root", "arm", "hand", "stub") and motion.fps == 120.0
    assert motion.skeleton.parents == (-1, 0, 1, 0)
    np.testing.assert_allclose(motion.positions, ASF_EXPECTED * 50.8, atol=1e-9)


# ---------------------------------------------------------------------------- errors, by hand

def _bvh_lines():
    return _order_bvh("Zrotation Yrotation Xrotation", "1 2 3").split("\n")


def _edit(lines, number, text):
    out = list(lines)
    out[number - 1] = text
    return "\n".join(out)


@pytest.mark.parametrize("text, line, words", [
    ("\n".join(_bvh_lines()[:9]), 9, "ends early"),                           # truncated hierarchy
    (_edit(_bvh_lines(), 19, "0 0 0 1 2"), 19, "5 values"),                   # wrong channel count
    (_edit(_bvh_lines(), 19, "0 0 0 1 two 3"), 19, "'two'"),                  # non-numeric
    (_edit(_bvh_lines(), 19, "0 0 0 1 nan 3"), 19, "non-finite"),
    (_edit(_bvh_lines(), 5, "  CHANNELS 6 Xposition Yposition Zposition Qrotation Y X"), 5, "Qrotation"),
    (_edit(_bvh_lines(), 17, "Frames: 3"), 20, "1 of 3 frames"),              # Frames says more
    (_edit(_bvh_lines(), 10, "    End Sight"), 10, "'Sight'"),
])
def test_bvh_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.bvh"
    path.write_text(text)
    with pytest.raises(PosekitError, match=rf"bad\.bvh:{line}: .*{re.escape(words)}"):
        read_bvh(path)


def test_missing_and_binary_files(tmp_path):
    for reader in (read_bvh, read_asf, lambda p: read_mocap(p)):
        with pytest.raises(PosekitError, match="nope.bvh: no such"):
            reader(tmp_path / "nope.bvh")
    garbage = tmp_path / "garbage.bvh"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PosekitError, match=r"garbage\.bvh:1: binary"):
        read_bvh(garbage)
    latin = tmp_path / "latin.asf"
    latin.write_bytes(b":version 1.10\n:name caf\xe9\n")
    with pytest.raises(PosekitError, match=r"latin\.asf:2: not UTF-8"):
        read_asf(latin)


def _asf_error(tmp_path, old, new):
    path = tmp_path / "bad.asf"
    path.write_text(ASF_TEXT.format(length="1.0", angle="deg", quarter="90").replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, line, words", [
    ("length 2", "length two", 20, "'two'"),
    ("    dof rx\n", "    dofs rx\n", 22, "unknown bone field 'dofs'"),
    ("    dof rx\n", "    dof rx l\n", 22, "dof 'l' is not supported"),
    ("    arm hand", "    arm hand finger", 45, "unknown bone 'finger'"),
    ("  end\n  begin\n     id 2", "  begin\n     id 2", 24, "unknown bone field 'begin'"),
    ("    root arm stub", "    root arm", 46, "'stub' is not connected"),
])
def test_asf_errors_name_file_and_line(tmp_path, old, new, line, words):
    with pytest.raises(PosekitError, match=rf"bad\.asf:{line}: .*{re.escape(words)}"):
        read_asf(_asf_error(tmp_path, old, new))


@pytest.mark.parametrize("old, new, line, words", [
    ("arm 90\n", "elbow 90\n", 5, "unknown bone 'elbow'"),
    ("hand 0 0\n2", "hand 0\n2", 6, "1 values, its dofs need 2"),
    ("root 1 2 3", "root 1 2 x", 8, "'x'"),
    ("\n3\n", "\n4\n", 11, "frame 4 follows frame 2"),
    ("arm 0\nhand 90", "hand 90", 10, "no 'arm' line"),
    ("arm 90\n", "arm 90\narm 90\n", 6, "given twice"),
])
def test_amc_errors_name_file_and_line(tmp_path, old, new, line, words):
    asf_path, _ = _write_asf_amc(tmp_path)
    path = tmp_path / "bad.amc"
    path.write_text(AMC_TEXT.format(unit="DEGREES", q="90").replace(old, new, 1))
    with pytest.raises(PosekitError, match=rf"bad\.amc:{line}: .*{re.escape(words)}"):
        read_amc(path, asf_path)


def test_read_mocap_refuses_what_it_cannot_read(tmp_path):
    asf_path, amc_path = _write_asf_amc(tmp_path)
    with pytest.raises(PosekitError, match="needs its skeleton"):
        read_mocap(amc_path)
    with pytest.raises(PosekitError, match="holds only the skeleton"):
        read_mocap(asf_path)
    with pytest.raises(PosekitError, match="unknown motion-capture format '.c3d'"):
        read_mocap(tmp_path / "walk.c3d")
    with pytest.raises(PosekitError, match="skeleton must be 'cmu_mocap' or None"):
        read_mocap(amc_path, asf=asf_path, skeleton="h36m17")
    with pytest.raises(PosekitError, match="test.asf: no bone 'lhipjoint' for joint 'LeftUpLeg'"):
        read_mocap(amc_path, asf=asf_path)
    with pytest.raises(PosekitError, match="units_to_mm must be a positive number"):
        read_mocap(amc_path, asf=asf_path, skeleton=None, units_to_mm=-1)


# ------------------------------------------------------------------------------------- fuzzing

SPECIAL_TOKENS = ["", "0", "-1", "3", "1e999", "1e308", "nan", "inf", "x", "{", "}", "#", "(", ")",
                  "\r\n", "\r", "\x00", "\xe9", "\ufeff", "\t", "ROOT", "JOINT", "End", "Site",
                  "OFFSET", "CHANNELS", "MOTION", "Frames:", "Frame", "Time:", "begin", "end",
                  ":root", ":bonedata", ":hierarchy", ":units", "dof", "rx", "axis", "root", "arm",
                  "hand", "lfemur", "99999999999", "123456789"]
_token = st.sampled_from(SPECIAL_TOKENS) | st.text(max_size=6)


@st.composite
def _mutated(draw, bases):
    """A valid file with one to three random edits: cuts, deletions, insertions, token swaps,
    duplicated/dropped/swapped lines; or random text; or random bytes."""
    kind = draw(st.sampled_from(["mutate"] * 8 + ["text", "bytes"]))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    text = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cut", "delete", "insert", "token", "token", "line"]))
        n = len(text)
        if op == "cut":
            text = text[:draw(st.integers(0, n))]
        elif op == "delete":
            a = draw(st.integers(0, n))
            text = text[:a] + text[draw(st.integers(a, min(n, a + 40))):]
        elif op == "insert":
            a = draw(st.integers(0, n))
            text = text[:a] + draw(_token) + text[a:]
        elif op == "token":
            parts = re.split(r"(\s+)", text)
            parts[draw(st.integers(0, len(parts) - 1))] = draw(_token)
            text = "".join(parts)
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            how = draw(st.sampled_from(["dup", "drop", "swap"]))
            if how == "dup":
                lines.insert(i, lines[j])
            elif how == "drop":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text.encode("utf-8", "surrogatepass")


def _fuzz(tmp_path, name, bases, read_and_compute):
    path = tmp_path / name
    count = []

    @settings(max_examples=1000, deadline=None, database=None)
    @given(data=_mutated(bases))
    def run(data):
        count.append(1)
        path.write_bytes(data)
        try:
            read_and_compute(path)
        except PosekitError as exc:
            assert "\n" not in str(exc) and name in str(exc)

    run()
    assert len(count) >= 1000


def _small_cmu_bvh(test_data):
    lines = (test_data / "mocap" / "02_01_first61.bvh").read_text().split("\n")
    end = lines.index("Frames: 61")
    return "\n".join(lines[:end] + ["Frames: 2"] + lines[end + 1:end + 4]) + "\n"


def test_fuzz_bvh_reader(tmp_path, test_data):
    bases = [CHAIN_BVH, _order_bvh("Xrotation Zrotation Yrotation", "1 2 3"),
             _small_cmu_bvh(test_data)]
    _fuzz(tmp_path, "fuzz.bvh", bases, lambda p: read_mocap(p, skeleton=None))


def test_fuzz_asf_reader(tmp_path, test_data):
    bases = [ASF_TEXT.format(length="0.45", angle="deg", quarter="90"),
             (test_data / "mocap" / "02.asf").read_text()]
    _fuzz(tmp_path, "fuzz.asf", bases, read_asf)


def test_fuzz_amc_reader(tmp_path, test_data):
    asf = read_asf(test_data / "mocap" / "02.asf")
    lines = (test_data / "mocap" / "02_01_first60.amc").read_text().split("\n")
    two_frames = "\n".join(lines[:lines.index("3")]) + "\n"
    bases = [two_frames, two_frames.replace("\n", "\r\n"), two_frames.replace(":DEGREES", ":RADIANS")]
    _fuzz(tmp_path, "fuzz.amc", bases, lambda p: asf_amc_positions(asf, read_amc(p, asf)))


# --------------------------------------------------------- real CMU files (copies in tests/data)

# Lengths of the ASF bones the cgspeed conversion dropped (`length` in each subject's .asf), in mm
THORAX_MM = {"01": 2.06488 * CMU_UNITS_TO_MM, "02": 2.06807 * CMU_UNITS_TO_MM}
WRIST_MM = {"01": {"Left": 1.74178 * CMU_UNITS_TO_MM, "Right": 1.72209 * CMU_UNITS_TO_MM},
            "02": {"Left": 1.67777 * CMU_UNITS_TO_MM, "Right": 1.68216 * CMU_UNITS_TO_MM}}
ABOVE_THORAX = ["Neck", "Neck1", "Head", "Head_End", "LeftShoulder", "LeftArm", "LeftForeArm",
                "LeftHand", "RightShoulder", "RightArm", "RightForeArm", "RightHand"]
HAND_TIPS = {"Left": ["LeftFingerBase", "LeftHandIndex1", "LThumb", "LeftHandIndex1_End", "LThumb_End"],
             "Right": ["RightFingerBase", "RightHandIndex1", "RThumb", "RightHandIndex1_End",
                       "RThumb_End"]}


def _check_cross_format(bvh_path, amc_path, asf_path, subject, frames):
    amc = read_mocap(amc_path, asf=asf_path)
    rebuilt = read_mocap(bvh_path, rebuild_offsets_from=asf_path)
    raw = read_mocap(bvh_path)
    assert len(amc) == len(rebuilt) == len(raw) == frames
    assert rebuilt.meta["dropped_tpose_frame"] and rebuilt.fps == amc.fps == 120.0
    assert amc.skeleton.name == rebuilt.skeleton.name == "cmu_mocap"
    error = np.linalg.norm(rebuilt.positions - amc.positions, axis=-1)
    assert error.max() < 0.01                       # millimetres, every joint of every frame

    skeleton = raw.skeleton
    shift = np.linalg.norm(raw.positions - amc.positions, axis=-1)
    above = skeleton.indices(ABOVE_THORAX)
    below = np.setdiff1d(np.arange(len(skeleton)),
                         np.concatenate([above, *map(skeleton.indices, HAND_TIPS.values())]))
    assert shift[:, below].max() < 0.01
    # everything above the thorax moves by the thorax bone, whatever the pose
    np.testing.assert_allclose(shift[:, above], THORAX_MM[subject], atol=0.01)
    # past the wrist the missing thorax and wrist bones add as vectors: triangle inequality bounds
    for side, names in HAND_TIPS.items():
        tips = shift[:, skeleton.indices(names)]
        thorax, wrist = THORAX_MM[subject], WRIST_MM[subject][side]
        assert abs(thorax - wrist) - 0.01 < tips.min() and tips.max() < thorax + wrist + 0.01
        assert tips.max() - tips.min() > 1.0


def test_cross_format_on_repository_copies(test_data):
    folder = test_data / "mocap"
    _check_cross_format(folder / "02_01_first61.bvh", folder / "02_01_first60.amc",
                        folder / "02.asf", "02", 60)
    # fairmotion's copies: CRLF ASF/AMC with a copyright comment line; BVH names LFingers/RFingers
    _check_cross_format(folder / "01_01_first31.bvh", folder / "01_01_first30.amc",
                        folder / "01.asf", "01", 30)


def test_rebuild_refuses_another_subjects_asf(test_data):
    folder = test_data / "mocap"
    with pytest.raises(PosekitError, match="OFFSET of LeftUpLeg .* is the ASF of the same subject"):
        read_mocap(folder / "02_01_first61.bvh", rebuild_offsets_from=folder / "01.asf")


def test_cmu_skeleton_matches_the_bvh_hierarchy(test_data):
    motion = read_bvh(test_data / "mocap" / "02_01_first61.bvh")
    skeleton = get_skeleton("cmu_mocap")
    assert skeleton.joints == motion.point_names
    assert skeleton.parents == motion.point_parents
    assert len(motion.names) == 31 and len(motion.end_site_parents) == 7
    assert is_synthetic_tpose(motion)
    assert not is_synthetic_tpose(replace(motion, motion=motion.motion[1:]))


def test_tpose_frame_height(test_data):
    """Frame 0 of the cgspeed BVH, a T-pose: head end and pelvis above the lowest foot point."""
    motion = read_bvh(test_data / "mocap" / "02_01_first61.bvh")
    for rebuilt, head_mm in [(False, (1400, 1500)), (True, (1500, 1600))]:
        if rebuilt:
            motion = rebuild_bvh_offsets(motion, test_data / "mocap" / "02.asf")
        tpose = bvh_positions(motion)[0]
        floor = tpose[:, 1].min()
        names = motion.point_names
        head = tpose[names.index("Head_End"), 1] - floor
        assert head_mm[0] < head < head_mm[1]
        assert 950 < tpose[names.index("Hips"), 1] - floor < 1000


def test_h36m17_mapping(test_data):
    folder = test_data / "mocap"
    motion = read_mocap(folder / "02_01_first60.amc", asf=folder / "02.asf")
    h36m, cmu = get_skeleton("h36m17"), motion.skeleton
    joints, scores = convert_keypoints(motion.positions, None, "cmu_mocap", "h36m17")
    assert np.all(scores == 1)
    for target, source in [("pelvis", "Hips"), ("left_hip", "LeftUpLeg"), ("right_knee", "RightLeg"),
                           ("left_ankle", "LeftFoot"), ("right_shoulder", "RightArm"),
                           ("left_elbow", "LeftForeArm"), ("right_wrist", "RightHand"),
                           ("spine", "Spine1"), ("thorax", "Neck"), ("neck_nose", "Head"),
                           ("head", "Head_End")]:
        np.testing.assert_array_equal(joints[:, h36m.index(target)], motion.positions[:, cmu.index(source)])
    height = joints[..., 1]                                  # Y up, an upright walk
    order = ["pelvis", "spine", "thorax", "neck_nose", "head"]
    assert np.all(np.diff(height[:, h36m.indices(order)], axis=1) > 0)


# ------------------------------------------------------------------- real files in ../shared

TRIALS = [("02", "02_01", 343), ("02", "02_03", 173), ("02", "02_04", 483), ("02", "02_05", 1854),
          ("07", "07_05", 517), ("09", "09_06", 141), ("131", "131_04", 1086), ("01", "01_01", 2751)]


@pytest.mark.parametrize("subject, trial, frames", TRIALS)
def test_amc_frame_counts(shared_mocap, subject, trial, frames):
    motion = read_mocap(shared_mocap / "cmu_asfamc" / f"{trial}.amc",
                        asf=shared_mocap / "cmu_asfamc" / f"{subject}.asf")
    assert motion.positions.shape == (frames, 38, 3)
    assert motion.meta["subject"] == subject and motion.meta["first_frame_number"] == 1


@pytest.mark.parametrize("trial, rows", [("01_01", 2752), ("01_14", 2339), ("02_01", 344)])
def test_cgspeed_bvh_frame_counts(shared_mocap, trial, rows):
    raw = read_bvh(shared_mocap / "cmu_bvh" / f"{trial}.bvh")
    assert raw.num_frames == rows and is_synthetic_tpose(raw)
    assert len(raw.names) == 31 and sum(len(c) for c in raw.channels) == 96
    assert raw.channels[0] == ("Xposition", "Yposition", "Zposition",
                               "Zrotation", "Yrotation", "Xrotation")
    motion = read_mocap(shared_mocap / "cmu_bvh" / f"{trial}.bvh")
    assert len(motion) == rows - 1 and motion.meta["dropped_tpose_frame"]
    tpose = bvh_positions(raw)[0]                       # millimetres, Y up
    floor = tpose[:, 1].min()
    assert 1400 < tpose[raw.point_names.index("Head_End"), 1] - floor < 1600
    assert 950 < tpose[raw.point_names.index("Hips"), 1] - floor < 1000


@pytest.mark.parametrize("subject, trial, frames", [("02", "02_01", 343), ("01", "01_01", 2751)])
def test_cross_format_full_trials(shared_mocap, subject, trial, frames):
    _check_cross_format(shared_mocap / "cmu_bvh" / f"{trial}.bvh",
                        shared_mocap / "cmu_asfamc" / f"{trial}.amc",
                        shared_mocap / "cmu_asfamc" / f"{subject}.asf", subject, frames)


def test_fk_speed_on_2751_frames(shared_mocap):
    motion = read_bvh(shared_mocap / "cmu_bvh" / "01_01.bvh")
    start = time.perf_counter()
    bvh_positions(motion)
    assert time.perf_counter() - start < 1.0


def test_nus_bvh_in_inches(shared_mocap):
    path = shared_mocap / "other_bvh" / "0005_Walking001.bvh"
    raw = read_bvh(path)
    assert len(raw.names) == 25 and raw.num_frames == 270 and not is_synthetic_tpose(raw)
    assert all(c == ("Xrotation", "Yrotation", "Zrotation") for c in raw.channels[1:])
    motion = read_mocap(path, skeleton=None, units_to_mm=25.4)
    assert len(motion) == 270 and motion.fps == 120.0
    sk, pos = motion.skeleton, motion.positions
    thigh = np.linalg.norm(pos[:, sk.index("LeftUpLeg")] - pos[:, sk.index("LeftLeg")], axis=-1)
    np.testing.assert_allclose(thigh, 15.7058 * 25.4, rtol=1e-9)      # OFFSET of LeftLeg, inches
    height = pos[..., 1]                                  # upright in every frame: Y up
    assert np.all(height[:, sk.index("Head")] - height[:, sk.index("Hips")] > 400)
    assert np.all(height[:, sk.index("Hips")] - height[:, sk.indices(["LeftFoot", "RightFoot"])].max(1)
                  > 400)
    with pytest.raises(PosekitError, match="no counterpart of joint 'LHipJoint'"):
        read_mocap(path)


# -------------------------------------------------------------------------------------- NRSfM

@pytest.mark.parametrize("name, frames, pairs", [("drink", 1102, 53), ("pickup", 357, 55),
                                                 ("stretch", 370, 51), ("yoga", 307, 55)])
def test_akhter_sequences(shared_mocap, name, frames, pairs):
    seq = read_nrsfm_mat(shared_mocap / "nrsfm_akhter" / f"{name}.mat")
    assert seq.S.shape == (frames, 41, 3) and seq.W.shape == (frames, 41, 2)
    assert seq.Rs.shape == (frames, 2, 3) and seq.bones.shape == (pairs, 2)
    assert seq.bones.min() >= 0 and seq.bones.max() <= 40
    centred = seq.S - seq.S.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum("fij,fpj->fpi", seq.Rs, centred), seq.W, atol=1e-9)
    np.testing.assert_allclose(np.einsum("fij,fkj->fik", seq.Rs, seq.Rs),
                               np.broadcast_to(np.eye(2), (frames, 2, 2)), atol=1e-9)
    assert np.abs(seq.S).max() == pytest.approx(1.0)        # normalised by 'scale'
    assert np.abs(seq.S_original).max() == pytest.approx(seq.scale)


def test_nrsfm_reader_errors(tmp_path):
    text = tmp_path / "notes.mat"
    text.write_text("not a mat file\n")
    with pytest.raises(PosekitError, match="notes.mat: not a readable MATLAB"):
        read_nrsfm_mat(text)
    with pytest.raises(PosekitError, match="absent.mat: no such"):
        read_nrsfm_mat(tmp_path / "absent.mat")
    good = {"S": np.zeros((6, 4)), "W": np.zeros((4, 4)), "Rs": np.zeros((4, 3)),
            "list": np.array([[1, 2], [2, 4]]), "scale": np.array([[2.0]])}
    for change, words in [({"Rs": None}, "no variable 'Rs'"), ({"W": np.zeros((6, 4))}, "'W' has shape"),
                          ({"S": np.zeros((5, 4))}, "3 per frame"), ({"list": np.array([[0, 1]])}, "1-based"),
                          ({"scale": np.array([[-1.0]])}, "positive")]:
        spec = {k: v for k, v in {**good, **change}.items() if v is not None}
        path = tmp_path / "bad.mat"
        savemat(path, spec)
        with pytest.raises(PosekitError, match=re.escape(words)):
            read_nrsfm_mat(path)
    path = tmp_path / "ok.mat"
    savemat(path, good)
    seq = read_nrsfm_mat(path)
    assert seq.S.shape == (2, 4, 3) and seq.bones.tolist() == [[0, 1], [1, 3]]
