"""Motion-capture readers (BVH, Acclaim ASF/AMC, the Akhter et al. NRSfM ``.mat`` sequences) and a BVH
writer (:func:`write_bvh`: joint positions to a rotation hierarchy Blender and other tools import).

The text readers parse a file into a plain record of what it says (:class:`BvhMotion`,
:class:`AsfSkeleton`, :class:`AmcMotion`); forward kinematics (:func:`bvh_positions`,
:func:`asf_amc_positions`) turns a record into joint positions in millimetres, vectorised over frames.
:func:`read_mocap` does both and returns a :class:`~posekit.data.structures.Motion` in the
``cmu_mocap`` skeleton, so BVH and ASF/AMC versions of a CMU trial can be compared joint by joint.

Conventions (checked against the CMU files, where the BVH and ASF/AMC versions of one trial agree):

* BVH rotation channels apply in the listed order as intrinsic rotations: ``Zrotation Yrotation
  Xrotation`` gives ``R = Rz @ Ry @ Rx`` acting on column vectors. Position channels (on any joint)
  are added to the joint's OFFSET.
* Acclaim: a bone's ``axis a b c XYZ`` is the rotation ``C`` made of rotations about the fixed axes in
  the listed order (``C = Rz(c) @ Ry(b) @ Rx(a)``); its AMC values rotate about fixed axes in the order
  of its ``dof`` line (``dof rx ry rz`` gives ``M = Rz @ Ry @ Rx``) and act in the bone's own frame,
  so the bone turns by ``C @ M @ C^-1`` relative to its parent. The root uses its ``order`` line the
  same way, after the ``orientation`` preset.
* CMU lengths are in units of 1/0.45 inch (``:units length 0.45``), for the ASF and for the cgspeed
  BVH conversion alike: millimetres = units x 25.4 / 0.45.

Every user mistake (missing file, binary data, truncated hierarchy, wrong value count, non-numeric or
non-finite value, unknown bone...) raises :class:`~posekit.errors.PosekitError` naming the file and line.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from posekit.data.structures import Motion
from posekit.errors import PosekitError
from posekit.geometry.rotations import euler_from_rotation_matrix, rotation_matrix_from_euler
from posekit.skeletons import Skeleton, get_skeleton

CMU_UNITS_TO_MM = 25.4 / 0.45
"""Millimetres per CMU length unit (1/0.45 inch), for the ASF and the cgspeed BVH files."""

CMU_AMC_FPS = 120.0
"""Frame rate of the CMU trials read here: AMC files store no rate; CMU's trial listing says 120 Hz
(a minority of other CMU trials are 60 Hz: pass ``fps=`` for those)."""

INCH_TO_MM = 25.4

_CMU_SKELETON = "cmu_mocap"


# --------------------------------------------------------------------------------------- text input

def _fail(path, line: int, message: str) -> PosekitError:
    return PosekitError(f"{path}:{line}: {message}")


def _show(token: str) -> str:
    """A token as it may appear in a one-line message."""
    text = repr(token)
    return text if len(text) <= 40 else text[:37] + "...'"


def _read_lines(path, what: str) -> list[str]:
    """The lines of a text file (LF, CRLF or CR endings), refusing binary data."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read the {what} file ({exc.strerror or type(exc).__name__})"
                           ) from None
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise _fail(path, line, f"binary data (NUL byte), not a {what} text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise _fail(path, line, f"not UTF-8 text; not a {what} file") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _strip_comment(line: str) -> str:
    cut = line.find("#")
    return line if cut < 0 else line[:cut]


def _number(token: str, path, line: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _fail(path, line, f"{what}: expected a number, got {_show(token)}") from None
    if not math.isfinite(value):
        raise _fail(path, line, f"{what}: {_show(token)} is not a finite number")
    return value


def _integer(token: str, path, line: int, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", token):
        raise _fail(path, line, f"{what}: expected a non-negative integer, got {_show(token)}")
    return int(token)


def _euler(axes: str, angles: np.ndarray, degrees: bool) -> np.ndarray:
    """(T, 3, 3) rotations for ``angles`` (T, len(axes)), 1 to 3 distinct axes; upper-case axes are
    intrinsic, lower-case extrinsic, so "ZYX" and "xyz" both give Rz @ Ry @ Rx. Fewer than three
    axes are completed with the missing ones at angle zero, which leaves the product unchanged."""
    letters = "XYZ" if axes.isupper() else "xyz"
    missing = [a for a in letters if a not in axes]
    angles = np.asarray(angles, dtype=float).reshape(-1, len(axes))
    full = np.concatenate([angles, np.zeros((len(angles), len(missing)))], axis=1)
    return rotation_matrix_from_euler(full, axes + "".join(missing), degrees=degrees)


def _check_units(units_to_mm) -> float:
    try:
        value = float(units_to_mm)
    except (TypeError, ValueError):
        raise PosekitError(f"units_to_mm must be a positive number, got {units_to_mm!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise PosekitError(f"units_to_mm must be a positive number, got {units_to_mm!r}")
    return value


def _finite_positions(positions: np.ndarray, source) -> np.ndarray:
    if not np.all(np.isfinite(positions)):
        raise PosekitError(f"{source}: joint positions overflow (values too large for float64)")
    return positions


# ----------------------------------------------------------------------------------------------- BVH

_BVH_CHANNELS = {f"{axis}{kind}".lower(): f"{axis}{kind}"
                 for axis in "XYZ" for kind in ("position", "rotation")}


@dataclass
class BvhMotion:
    """A BVH file as written: hierarchy, channel layout and the raw motion table (file units, degrees).

    names, parents     joints in file order (parents come first; the root's parent is -1)
    offsets            (J, 3) OFFSET of each joint from its parent
    channels           per joint, its channel names in file order ("Zrotation", "Xposition", ...)
    motion             (T, C) one row per frame, the channels of all joints in joint order
    frame_time         seconds per frame
    end_site_parents   (E,) joint index of each End Site; end_site_offsets (E, 3)
    """

    path: str
    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    motion: np.ndarray
    frame_time: float
    end_site_parents: tuple[int, ...] = ()
    end_site_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    @property
    def num_frames(self) -> int:
        return len(self.motion)

    @property
    def fps(self) -> float:
        """1 / frame_time, snapped to the nearest integer rate when the printed frame time is a
        rounded 1/n (".0083333" is 120 Hz)."""
        rate = 1.0 / self.frame_time
        nearest = round(rate)
        return float(nearest) if nearest > 0 and abs(rate - nearest) < 1e-4 * rate else rate

    @property
    def channel_starts(self) -> tuple[int, ...]:
        """Column of each joint's first channel in ``motion``."""
        starts, total = [], 0
        for chans in self.channels:
            starts.append(total)
            total += len(chans)
        return tuple(starts)

    @property
    def end_site_names(self) -> tuple[str, ...]:
        """"<parent>_End", numbered ("_End2", ...) where that name is already taken."""
        names, taken = [], set(self.names)
        for p in self.end_site_parents:
            name, k = f"{self.names[p]}_End", 1
            while name in taken:
                k += 1
                name = f"{self.names[p]}_End{k}"
            taken.add(name)
            names.append(name)
        return tuple(names)

    @property
    def point_names(self) -> tuple[str, ...]:
        """Names of the rows of :func:`bvh_positions` with end sites: joints, then end sites."""
        return self.names + self.end_site_names

    @property
    def point_parents(self) -> tuple[int, ...]:
        return self.parents + self.end_site_parents


class _BvhTokens:
    """Whitespace tokens of the hierarchy part, with their line numbers (braces stand alone)."""

    def __init__(self, lines: list[str], path):
        self.lines, self.path = lines, path
        self.next_line = 0
        self.pending: list[str] = []
        self.line = 0

    def take(self, expected: str) -> str:
        while not self.pending:
            if self.next_line >= len(self.lines):
                raise _fail(self.path, len(self.lines), f"file ends early; expected {expected}")
            text = _strip_comment(self.lines[self.next_line])
            self.next_line += 1
            self.line = self.next_line
            self.pending = text.replace("{", " { ").replace("}", " } ").split()[::-1]
        return self.pending.pop()

    def expect(self, keyword: str) -> None:
        token = self.take(repr(keyword))
        if token.upper() != keyword.upper():
            raise _fail(self.path, self.line, f"expected {keyword!r}, got {_show(token)}")


def read_bvh(path) -> BvhMotion:
    """Parse a BVH file: hierarchy (any channel order, End Sites, ``#`` comments) and motion table."""
    lines = _read_lines(path, "BVH")
    tokens = _BvhTokens(lines, path)
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    names: list[str] = []
    parents: list[int] = []
    offsets: list = []
    channels: list = []
    end_parents: list[int] = []
    end_offsets: list = []
    stack: list[tuple[str, int]] = []

    def open_joint(parent: int) -> None:
        name = tokens.take("a joint name")
        if name in ("{", "}"):
            raise _fail(path, tokens.line, f"expected a joint name, got {name!r}")
        if name in names:
            raise _fail(path, tokens.line, f"joint {_show(name)} is declared twice")
        tokens.expect("{")
        names.append(name)
        parents.append(parent)
        offsets.append(None)
        channels.append(None)
        stack.append(("joint", len(names) - 1))

    open_joint(-1)
    while stack:
        kind, index = stack[-1]
        owner = names[index] if kind == "joint" else f"End Site of {names[end_parents[index]]}"
        token = tokens.take("OFFSET, CHANNELS, JOINT, End Site or '}'")
        keyword = token.upper()
        if keyword == "OFFSET":
            target = offsets if kind == "joint" else end_offsets
            if target[index] is not None:
                raise _fail(path, tokens.line, f"{_show(owner)} has two OFFSET lines")
            target[index] = [_number(tokens.take("an OFFSET value"), path, tokens.line,
                                     f"OFFSET of {_show(owner)}") for _ in range(3)]
        elif keyword == "CHANNELS" and kind == "joint":
            if channels[index] is not None:
                raise _fail(path, tokens.line, f"{_show(owner)} has two CHANNELS lines")
            count = _integer(tokens.take("a channel count"), path, tokens.line,
                             f"CHANNELS of {_show(owner)}")
            chans = []
            for _ in range(count):
                name = tokens.take(f"{count} channel names")
                canonical = _BVH_CHANNELS.get(name.lower())
                if canonical is None:
                    raise _fail(path, tokens.line, f"unknown channel {_show(name)} of {_show(owner)}")
                if canonical in chans:
                    raise _fail(path, tokens.line, f"channel {canonical} listed twice for {_show(owner)}")
                chans.append(canonical)
            channels[index] = tuple(chans)
        elif keyword == "JOINT" and kind == "joint":
            open_joint(index)
        elif keyword == "END" and kind == "joint":
            tokens.expect("Site")
            tokens.expect("{")
            end_parents.append(index)
            end_offsets.append(None)
            stack.append(("end", len(end_parents) - 1))
        elif token == "}":
            if (offsets if kind == "joint" else end_offsets)[index] is None:
                raise _fail(path, tokens.line, f"{_show(owner)} has no OFFSET")
            if kind == "joint" and channels[index] is None:
                raise _fail(path, tokens.line, f"{_show(owner)} has no CHANNELS")
            stack.pop()
        else:
            raise _fail(path, tokens.line, f"unexpected {_show(token)} in {_show(owner)}")

    tokens.expect("MOTION")
    tokens.expect("Frames:")
    num_frames = _integer(tokens.take("the frame count"), path, tokens.line, "Frames:")
    tokens.expect("Frame")
    tokens.expect("Time:")
    frame_time = _number(tokens.take("the frame time"), path, tokens.line, "Frame Time:")
    if frame_time <= 0 or not math.isfinite(1.0 / frame_time):
        raise _fail(path, tokens.line, f"Frame Time: must be positive, got {frame_time}")
    if tokens.pending:
        raise _fail(path, tokens.line, f"unexpected {_show(tokens.pending[-1])} after the frame time")

    width = sum(len(c) for c in channels)
    rows, row_lines = [], []
    for number in range(tokens.next_line, len(lines)):
        values = _strip_comment(lines[number]).split()
        if not values:
            continue
        if len(rows) == num_frames:
            raise _fail(path, number + 1, f"more motion lines than 'Frames: {num_frames}'")
        if len(values) != width:
            raise _fail(path, number + 1,
                        f"motion line has {len(values)} values, the hierarchy has {width} channels")
        try:
            row = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise _fail(path, number + 1, f"non-numeric motion value {_show(bad)}") from None
        rows.append(row)
        row_lines.append(number + 1)
    if len(rows) < num_frames:
        raise _fail(path, len(lines), f"file ends after {len(rows)} of {num_frames} frames")
    motion = np.array(rows, dtype=float).reshape(num_frames, width)
    if not np.all(np.isfinite(motion)):
        frame = int(np.flatnonzero(~np.all(np.isfinite(motion), axis=1))[0])
        raise _fail(path, row_lines[frame], f"frame {frame} has a non-finite value")
    return BvhMotion(
        path=str(path), names=tuple(names), parents=tuple(parents),
        offsets=np.array(offsets, dtype=float).reshape(-1, 3), channels=tuple(channels),
        motion=motion, frame_time=frame_time, end_site_parents=tuple(end_parents),
        end_site_offsets=np.array(end_offsets, dtype=float).reshape(-1, 3))


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def bvh_positions(motion: BvhMotion, include_end_sites: bool = True, *,
                  units_to_mm: float = CMU_UNITS_TO_MM) -> np.ndarray:
    """Forward kinematics: (T, J [+ E], 3) joint positions in millimetres, rows as ``point_names``.

    ``units_to_mm`` converts the file's units: the default is the CMU unit (1/0.45 inch); use
    :data:`INCH_TO_MM` for files in inches, 10 for centimetres, 1 for millimetres.
    """
    scale = _check_units(units_to_mm)
    num_frames, num_joints = motion.num_frames, len(motion.names)
    num_points = num_joints + (len(motion.end_site_parents) if include_end_sites else 0)
    if num_frames == 0:
        return np.zeros((0, num_points, 3))
    positions = np.empty((num_frames, num_points, 3))
    rotations = np.empty((num_frames, num_joints, 3, 3))
    with np.errstate(over="ignore", invalid="ignore"):
        for j, (chans, start) in enumerate(zip(motion.channels, motion.channel_starts)):
            values = motion.motion[:, start:start + len(chans)]
            local = np.broadcast_to(motion.offsets[j], (num_frames, 3)).copy()
            rot_axes, rot_columns = "", []
            for c, name in enumerate(chans):
                if name.endswith("position"):
                    local[:, "XYZ".index(name[0])] += values[:, c]
                else:
                    rot_axes += name[0]
                    rot_columns.append(c)
            parent = motion.parents[j]
            if parent < 0:
                positions[:, j] = local
                rotations[:, j] = np.eye(3)
            else:
                positions[:, j] = positions[:, parent] + np.einsum(
                    "tij,tj->ti", rotations[:, parent], local)
                rotations[:, j] = rotations[:, parent]
            if rot_axes:
                rotations[:, j] = rotations[:, j] @ _euler(rot_axes, values[:, rot_columns], True)
        if include_end_sites:
            for e, (parent, offset) in enumerate(zip(motion.end_site_parents,
                                                     motion.end_site_offsets)):
                positions[:, num_joints + e] = positions[:, parent] + rotations[:, parent] @ offset
        positions *= scale
    return _finite_positions(positions, motion.path)


def is_synthetic_tpose(motion: BvhMotion) -> bool:
    """Whether frame 0 is the T-pose the cgspeed CMU conversion inserts: every rotation value a whole
    number, no root rotation, while frame 1 (real capture, 4 decimals) is not all whole numbers."""
    if motion.num_frames < 2:
        return False
    rot_columns = [start + c for chans, start in zip(motion.channels, motion.channel_starts)
                   for c, name in enumerate(chans) if name.endswith("rotation")]
    if not rot_columns:
        return False
    root_rot = [c for c in rot_columns if c < len(motion.channels[0])]
    first, second = motion.motion[0, rot_columns], motion.motion[1, rot_columns]
    return bool(np.all(first == np.round(first)) and np.all(motion.motion[0, root_rot] == 0)
                and not np.all(second == np.round(second)))


def rebuild_bvh_offsets(motion: BvhMotion, asf: "AsfSkeleton | str | Path",
                        tolerance: float = 1e-4) -> BvhMotion:
    """The motion with every joint and End Site OFFSET recomputed from the subject's ASF bones.

    The cgspeed CMU conversion set the OFFSET of the joints after a branching ASF bone (``thorax``,
    ``lwrist``, ``rwrist``) to zero; their true offset is the length of that bone. Joints are matched
    to ASF bone ends through the ``cmu_mocap`` skeleton's ``asf_points`` table. Every non-zero OFFSET
    of the file must agree with the ASF to ``tolerance`` (file units; the CMU files agree to 6e-6),
    which catches an ASF of another subject.
    """
    asf = asf if isinstance(asf, AsfSkeleton) else read_asf(asf)
    points = _cmu_tables()["asf_points"]
    rest = asf.rest_points()
    names = _cmu_point_names(motion)

    def asf_point(name: str) -> np.ndarray:
        if name not in points:
            raise PosekitError(f"{motion.path}: joint {_show(name)} has no ASF counterpart "
                               f"in the {_CMU_SKELETON} skeleton; cannot rebuild offsets")
        if points[name] not in rest:
            raise PosekitError(f"{asf.path}: no bone {points[name]!r} (needed for {name})")
        return rest[points[name]]

    num_joints = len(motion.names)
    offsets = motion.offsets.copy()
    end_offsets = motion.end_site_offsets.copy()
    for i, parent in enumerate(motion.point_parents):
        if parent < 0:
            continue
        new = asf_point(names[i]) - asf_point(names[parent])
        old = offsets[i] if i < num_joints else end_offsets[i - num_joints]
        if np.linalg.norm(old) > 1e-9 and np.max(np.abs(old - new)) > tolerance:
            raise PosekitError(
                f"{motion.path}: OFFSET of {names[i]} {np.round(old, 5).tolist()} differs from "
                f"{asf.path} ({np.round(new, 5).tolist()}); is the ASF of the same subject?")
        if i < num_joints:
            offsets[i] = new
        else:
            end_offsets[i - num_joints] = new
    return replace(motion, offsets=offsets, end_site_offsets=end_offsets)


# ---------------------------------------------------------------------------------------- ASF / AMC

@dataclass
class AsfBone:
    """One ``begin ... end`` block of an ASF file (angles in the file's unit)."""

    name: str
    direction: np.ndarray          # (3,) unit vector, in the rest pose, world frame
    length: float
    axis: np.ndarray               # (3,) axis angles
    axis_order: str                # e.g. "XYZ": rotations about fixed axes in this order
    dofs: tuple[str, ...] = ()     # e.g. ("rx", "ry", "rz"): AMC value order and rotation order


@dataclass
class AsfSkeleton:
    """An Acclaim skeleton file: units, root, bones (in hierarchy order) and their parents."""

    path: str
    length_unit: float             # ``:units length``
    degrees: bool                  # ``:units angle deg`` (True) or ``rad``
    root_order: tuple[str, ...]    # e.g. ("tx", "ty", "tz", "rx", "ry", "rz")
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    bones: tuple[AsfBone, ...]     # parents before children
    parents: tuple[str, ...]       # parent of each bone: "root" or a bone name

    @property
    def point_names(self) -> tuple[str, ...]:
        """Rows of :func:`asf_amc_positions`: the root, then the END of each bone."""
        return ("root",) + tuple(b.name for b in self.bones)

    @property
    def units_to_mm(self) -> float:
        """Millimetres per length unit, reading ``length L`` as "units of 1/L inch" (the VICON and
        CMU convention; CMU's 0.45 gives 56.44 mm)."""
        return INCH_TO_MM / self.length_unit

    def rest_points(self) -> dict[str, np.ndarray]:
        """Rest-pose position of the root (origin) and of each bone end, in file units."""
        points = {"root": np.zeros(3)}
        with np.errstate(over="ignore", invalid="ignore"):
            for bone, parent in zip(self.bones, self.parents):
                points[bone.name] = points[parent] + bone.direction * bone.length
        return points


_ASF_BONE_KEYS = {"id", "name", "direction", "length", "axis", "dof", "limits", "bodymass", "cofmass"}
_ROOT_CHANNELS = ("tx", "ty", "tz", "rx", "ry", "rz")


def _axis_order(token: str, path, line: int) -> str:
    order = token.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise _fail(path, line, f"axis order must be a permutation of XYZ, got {_show(token)}")
    return order


def read_asf(path) -> AsfSkeleton:
    """Parse an Acclaim skeleton (``.asf``): ``:units``, ``:root``, ``:bonedata``, ``:hierarchy``."""
    lines = _read_lines(path, "ASF")
    length_unit, degrees = 1.0, True
    root: dict = {}
    bones: dict[str, dict] = {}
    children: dict[str, list[str]] = {}
    section, bone, in_limits, hierarchy_state, hierarchy_end = None, None, False, None, 0
    seen_sections: set[str] = set()
    for number, raw in enumerate(lines, 1):
        tokens = re.sub(r"[(),]", " ", _strip_comment(raw)).split()
        if not tokens:
            continue
        head = tokens[0].lower()
        if head.startswith(":"):
            if bone is not None:
                raise _fail(path, number, f"bone block {_show(bone.get('name', '?'))} has no 'end'")
            if section == "hierarchy" and hierarchy_state == "open":
                raise _fail(path, number, ":hierarchy has no 'end'")
            section = head[1:]
            if section in seen_sections and section in ("root", "bonedata", "hierarchy", "units"):
                raise _fail(path, number, f"section {head} appears twice")
            seen_sections.add(section)
            continue
        if section not in ("units", "root", "bonedata", "hierarchy"):
            if section is None:
                raise _fail(path, number, f"unexpected {_show(tokens[0])} before any ':' section")
            continue                                   # free text or a section not used here
        if section == "units":
            if head == "length" and len(tokens) == 2:
                length_unit = _number(tokens[1], path, number, "units length")
                if length_unit <= 0:
                    raise _fail(path, number, "units length must be positive")
            elif head == "angle" and len(tokens) == 2 and tokens[1].lower() in ("deg", "rad"):
                degrees = tokens[1].lower() == "deg"
            elif head == "mass" and len(tokens) == 2:
                _number(tokens[1], path, number, "units mass")
            else:
                raise _fail(path, number, f"cannot read :units line {_show(' '.join(tokens))}")
        elif section == "root":
            if head in root:
                raise _fail(path, number, f":root has two {head!r} lines")
            if head == "order":
                order = tuple(t.lower() for t in tokens[1:])
                if (not set(order) <= set(_ROOT_CHANNELS) or len(set(order)) != len(order)):
                    raise _fail(path, number, "root order must list distinct TX TY TZ RX RY RZ")
                root[head] = order
            elif head == "axis" and len(tokens) == 2:
                root[head] = _axis_order(tokens[1], path, number)
            elif head in ("position", "orientation") and len(tokens) == 4:
                root[head] = np.array([_number(t, path, number, f"root {head}") for t in tokens[1:]])
            else:
                raise _fail(path, number, f"cannot read :root line {_show(' '.join(tokens))}")
        elif section == "bonedata":
            if bone is None:
                if head != "begin" or len(tokens) != 1:
                    raise _fail(path, number, f"expected 'begin' of a bone, got {_show(tokens[0])}")
                bone, in_limits = {"line": number}, False
                continue
            if head == "end" and len(tokens) == 1:
                _finish_bone(bone, bones, path, number)
                bone = None
                continue
            if head not in _ASF_BONE_KEYS:
                if in_limits and all(_is_float(t) for t in tokens):   # more 'limits' pairs
                    continue
                raise _fail(path, number, f"unknown bone field {_show(tokens[0])}")
            in_limits = head == "limits"
            if head in bone and head != "limits":
                raise _fail(path, number, f"bone has two {head!r} lines")
            if head == "name" and len(tokens) == 2:
                bone["name"] = tokens[1]
            elif head in ("direction",) and len(tokens) == 4:
                bone[head] = np.array([_number(t, path, number, head) for t in tokens[1:]])
            elif head == "length" and len(tokens) == 2:
                bone[head] = _number(tokens[1], path, number, "length")
                if bone[head] < 0:
                    raise _fail(path, number, "bone length must not be negative")
            elif head == "axis" and len(tokens) == 5:
                bone["axis"] = np.array([_number(t, path, number, "axis") for t in tokens[1:4]])
                bone["axis_order"] = _axis_order(tokens[4], path, number)
            elif head == "dof":
                dofs = tuple(t.lower() for t in tokens[1:])
                unsupported = [d for d in dofs if d not in ("rx", "ry", "rz")]
                if unsupported:
                    raise _fail(path, number, f"dof {_show(unsupported[0])} is not supported "
                                              "(only rotational dofs rx ry rz)")
                if len(set(dofs)) != len(dofs):
                    raise _fail(path, number, "a dof is listed twice")
                bone["dof"] = dofs
            elif head in ("id", "limits", "bodymass", "cofmass"):
                bone[head] = True
            else:
                raise _fail(path, number, f"cannot read bone line {_show(' '.join(tokens))}")
        else:                                                             # hierarchy
            if hierarchy_state is None:
                if head != "begin" or len(tokens) != 1:
                    raise _fail(path, number, f"expected 'begin' of :hierarchy, got {_show(tokens[0])}")
                hierarchy_state = "open"
            elif hierarchy_state == "closed":
                raise _fail(path, number, f"unexpected {_show(tokens[0])} after the :hierarchy 'end'")
            elif head == "end" and len(tokens) == 1:
                hierarchy_state, hierarchy_end = "closed", number
            else:
                parent = tokens[0]
                if parent != "root" and parent not in bones:
                    raise _fail(path, number, f"unknown bone {_show(parent)} in :hierarchy")
                for child in tokens[1:]:
                    if child not in bones:
                        raise _fail(path, number, f"unknown bone {_show(child)} in :hierarchy")
                    if any(child in c for c in children.values()):
                        raise _fail(path, number, f"bone {_show(child)} has two parents")
                    children.setdefault(parent, []).append(child)
    end = len(lines)
    if bone is not None:
        raise _fail(path, end, f"file ends inside the bone block started on line {bone['line']}")
    if hierarchy_state == "open":
        raise _fail(path, end, "file ends inside :hierarchy")
    if "order" not in root:
        raise _fail(path, end, "no :root 'order' line")
    ordered, parents = [], []
    stack = [("root", c) for c in reversed(children.get("root", []))]
    while stack:
        parent, name = stack.pop()
        ordered.append(name)
        parents.append(parent)
        stack.extend((name, c) for c in reversed(children.get(name, [])))
    missing = [name for name in bones if name not in ordered]
    if missing:
        raise _fail(path, hierarchy_end or end,
                    f"bone {_show(missing[0])} is not connected to the root in :hierarchy")
    return AsfSkeleton(
        path=str(path), length_unit=length_unit, degrees=degrees, root_order=root["order"],
        root_axis=root.get("axis", "XYZ"), root_position=root.get("position", np.zeros(3)),
        root_orientation=root.get("orientation", np.zeros(3)),
        bones=tuple(bones[n] for n in ordered), parents=tuple(parents))


def _finish_bone(spec: dict, bones: dict, path, line: int) -> None:
    for key in ("name", "direction", "length", "axis"):
        if key not in spec:
            raise _fail(path, line, f"bone block from line {spec['line']} has no {key!r}")
    name = spec["name"]
    if name == "root":
        raise _fail(path, line, "a bone may not be named 'root' (the name of the root segment)")
    if name in bones:
        raise _fail(path, line, f"bone {_show(name)} is defined twice")
    with np.errstate(over="ignore"):
        norm = float(np.linalg.norm(spec["direction"]))
    if not (norm > 1e-12 and math.isfinite(norm)):
        raise _fail(path, line, f"bone {_show(name)} has a zero or invalid direction")
    bones[name] = AsfBone(name=name, direction=spec["direction"] / norm, length=spec["length"],
                          axis=spec["axis"], axis_order=spec["axis_order"],
                          dofs=spec.get("dof", ()))


@dataclass
class AmcMotion:
    """An AMC file's values: one row per frame, segments in the ASF's layout (``columns``)."""

    path: str
    frame_numbers: np.ndarray      # (T,) the frame numbers written in the file
    values: np.ndarray             # (T, D) file units and angles
    columns: dict[str, slice]      # "root" and every bone -> its columns of ``values`` (may be empty)
    degrees: bool

    def __len__(self) -> int:
        return len(self.values)

    def segment(self, name: str) -> np.ndarray:
        """(T, n) values of one segment, in its ``order``/``dof`` order (n = 0 for bones without dofs)."""
        return self.values[:, self.columns[name]]


def _amc_layout(asf: AsfSkeleton) -> dict[str, slice]:
    columns, start = {}, 0
    for name, count in [("root", len(asf.root_order))] + [(b.name, len(b.dofs)) for b in asf.bones]:
        columns[name] = slice(start, start + count)
        start += count
    return columns


def read_amc(path, asf: "AsfSkeleton | str | Path") -> AmcMotion:
    """Parse an Acclaim motion (``.amc``) against its skeleton (an :class:`AsfSkeleton` or ASF path).

    Every frame must give every segment that has dofs exactly once; frame numbers must count up by one.
    """
    asf = asf if isinstance(asf, AsfSkeleton) else read_asf(asf)
    lines = _read_lines(path, "AMC")
    columns = _amc_layout(asf)
    counts = {name: s.stop - s.start for name, s in columns.items()}
    width = sum(counts.values())
    needed = {name for name, n in counts.items() if n > 0}
    degrees = asf.degrees
    numbers: list[int] = []
    rows: list[list[float]] = []
    row: list[float] | None = None
    given: set[str] = set()
    frame_line = 0

    def close_frame(line: int) -> None:
        missing = needed - given
        if missing:
            raise _fail(path, line, f"frame {numbers[-1]} (line {frame_line}) has no "
                                    f"{_show(sorted(missing)[0])} line")

    for number, raw in enumerate(lines, 1):
        tokens = _strip_comment(raw).split()
        if not tokens:
            continue
        if tokens[0].startswith(":"):
            keyword = tokens[0].upper()
            if rows or keyword not in (":FULLY-SPECIFIED", ":DEGREES", ":RADIANS") or len(tokens) > 1:
                raise _fail(path, number, f"unexpected keyword line {_show(raw.strip())}")
            if keyword != ":FULLY-SPECIFIED":
                degrees = keyword == ":DEGREES"
            continue
        if len(tokens) == 1 and tokens[0].isdigit():
            frame = _integer(tokens[0], path, number, "frame number")
            if numbers:
                close_frame(number)
                if frame != numbers[-1] + 1:
                    raise _fail(path, number, f"frame {frame} follows frame {numbers[-1]}")
            numbers.append(frame)
            row = [0.0] * width
            rows.append(row)
            given, frame_line = set(), number
            continue
        name = tokens[0]
        if row is None:
            raise _fail(path, number, f"segment line {_show(name)} before the first frame number")
        if name not in columns:
            raise _fail(path, number, f"unknown bone {_show(name)} (not in {asf.path})")
        if name in given:
            raise _fail(path, number, f"bone {_show(name)} given twice in frame {numbers[-1]}")
        if len(tokens) - 1 != counts[name]:
            raise _fail(path, number, f"{_show(name)} has {len(tokens) - 1} values, "
                                      f"its dofs need {counts[name]}")
        start = columns[name].start
        for k, token in enumerate(tokens[1:]):
            row[start + k] = _number(token, path, number, f"value of {_show(name)}")
        given.add(name)
    if not rows:
        raise _fail(path, len(lines), "no frames (a frame is a line with its number, then one "
                                      "line per bone)")
    close_frame(len(lines))
    return AmcMotion(path=str(path), frame_numbers=np.array(numbers),
                     values=np.array(rows, dtype=float).reshape(len(rows), width),
                     columns=columns, degrees=degrees)


def asf_amc_positions(asf: AsfSkeleton, amc: AmcMotion, *, units_to_mm: float | None = None
                      ) -> np.ndarray:
    """Forward kinematics: (T, 1 + bones, 3) millimetres, rows as ``asf.point_names`` (root, then
    the end of each bone). ``units_to_mm`` defaults to the ASF's own (:attr:`AsfSkeleton.units_to_mm`).
    """
    if _amc_layout(asf) != amc.columns:
        raise PosekitError(f"{amc.path}: was read with another skeleton than {asf.path}")
    scale = _check_units(asf.units_to_mm if units_to_mm is None else units_to_mm)
    num_frames = len(amc)
    if num_frames == 0:
        return np.zeros((0, 1 + len(asf.bones), 3))
    root_values = amc.segment("root")
    translation = np.zeros((num_frames, 3))
    rot_axes, rot_columns = "", []
    for c, channel in enumerate(asf.root_order):
        if channel[0] == "t":
            translation[:, "xyz".index(channel[1])] = root_values[:, c]
        else:
            rot_axes += channel[1]
            rot_columns.append(c)
    preset = _euler(asf.root_axis.lower(), asf.root_orientation[None], asf.degrees)[0]
    root_rotation = np.broadcast_to(preset, (num_frames, 3, 3))
    if rot_axes:
        root_rotation = preset @ _euler(rot_axes, root_values[:, rot_columns], amc.degrees)
    point = {"root": asf.root_position + translation}     # root position, then each bone's end
    rotation = {"root": root_rotation}
    with np.errstate(over="ignore", invalid="ignore"):
        for bone, parent in zip(asf.bones, asf.parents):
            axis = _euler(bone.axis_order.lower(), bone.axis[None], asf.degrees)[0]
            if bone.dofs:
                motion = _euler("".join(d[1] for d in bone.dofs), amc.segment(bone.name), amc.degrees)
                rotation[bone.name] = rotation[parent] @ (axis @ motion @ axis.T)
            else:
                rotation[bone.name] = rotation[parent]
            point[bone.name] = point[parent] + rotation[bone.name] @ (bone.direction * bone.length)
        positions = np.stack([point[name] for name in asf.point_names], axis=1) * scale
    return _finite_positions(positions, amc.path)


# ------------------------------------------------------------------------------- common entry point

@lru_cache(maxsize=1)
def _cmu_tables() -> dict:
    """The ``cmu_mocap`` skeleton's correspondence tables (ASF bone ends, BVH name aliases)."""
    meta = get_skeleton(_CMU_SKELETON).meta
    return {"asf_points": dict(meta["asf_points"]), "bvh_aliases": dict(meta.get("bvh_aliases") or {})}


def _cmu_point_names(motion: BvhMotion) -> tuple[str, ...]:
    """``point_names`` with the joint names other CMU conversions use replaced by the cmu_mocap ones."""
    aliases = _cmu_tables()["bvh_aliases"]
    return replace(motion, names=tuple(aliases.get(n, n) for n in motion.names)).point_names


def _own_skeleton(name: str, joints, parents) -> Skeleton:
    return Skeleton(name=name, joints=tuple(joints), parents=tuple(parents),
                    bones=tuple((p, c) for c, p in enumerate(parents) if p >= 0))


def _trial_meta(path: Path) -> dict:
    match = re.fullmatch(r"(\d+)_(\d+)", path.stem)
    return {"subject": match.group(1), "trial": path.stem} if match else {}


def read_mocap(path, *, asf=None, skeleton: str | None = _CMU_SKELETON, rebuild_offsets_from=None,
               units_to_mm: float | None = None, fps: float | None = None,
               drop_tpose: bool = True) -> Motion:
    """Read a ``.bvh`` or ``.amc`` (with ``asf=``) file as a :class:`Motion` in millimetres.

    skeleton              "cmu_mocap" (default): the CMU joints, the same for both formats;
                          None: the file's own joints (BVH joints then End Sites; ASF root then
                          bone ends), as a skeleton named after the file
    rebuild_offsets_from  BVH only: the subject's ASF, to restore the offsets the cgspeed conversion
                          zeroed (:func:`rebuild_bvh_offsets`)
    units_to_mm           default: CMU units for BVH, the ASF's ``:units length`` for AMC
    fps                   default: 1 / Frame Time for BVH, :data:`CMU_AMC_FPS` for AMC (no rate field)
    drop_tpose            drop the synthetic T-pose frame 0 of cgspeed BVH files when detected
                          (:func:`is_synthetic_tpose`); ``meta["dropped_tpose_frame"]`` records it
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if skeleton is not None:
        skeleton = get_skeleton(skeleton)
        if skeleton.name != _CMU_SKELETON:
            raise PosekitError(f"read_mocap: skeleton must be {_CMU_SKELETON!r} or None, "
                               f"got {skeleton.name!r}")
    meta = {"source": str(path), **_trial_meta(path)}
    if suffix == ".bvh":
        if asf is not None:
            raise PosekitError(f"{path}: asf= is for .amc files; for a BVH use rebuild_offsets_from=")
        motion = read_bvh(path)
        dropped = drop_tpose and is_synthetic_tpose(motion)
        if dropped:
            motion = replace(motion, motion=motion.motion[1:])
        if rebuild_offsets_from is not None:
            motion = rebuild_bvh_offsets(motion, rebuild_offsets_from)
        scale = CMU_UNITS_TO_MM if units_to_mm is None else units_to_mm
        positions = bvh_positions(motion, True, units_to_mm=scale)
        rate = motion.fps if fps is None else fps
        meta.update(format="bvh", units_to_mm=float(scale), frame_time=motion.frame_time,
                    dropped_tpose_frame=bool(dropped),
                    rebuilt_offsets_from=None if rebuild_offsets_from is None
                    else str(getattr(rebuild_offsets_from, "path", rebuild_offsets_from)))
        own_names, own_parents = motion.point_names, motion.point_parents
        column = {name: i for i, name in enumerate(_cmu_point_names(motion))}
    elif suffix == ".amc":
        if asf is None:
            raise PosekitError(f"{path}: an AMC file needs its skeleton: pass asf=<subject>.asf")
        if rebuild_offsets_from is not None:
            raise PosekitError(f"{path}: rebuild_offsets_from= is for cgspeed BVH files")
        asf = asf if isinstance(asf, AsfSkeleton) else read_asf(asf)
        amc = read_amc(path, asf)
        scale = asf.units_to_mm if units_to_mm is None else units_to_mm
        positions = asf_amc_positions(asf, amc, units_to_mm=scale)
        rate = CMU_AMC_FPS if fps is None else fps
        meta.update(format="asf/amc", asf=asf.path, units_to_mm=float(scale),
                    first_frame_number=int(amc.frame_numbers[0]),
                    fps_source="given" if fps is not None else "CMU trial listing (AMC stores no rate)")
        own_names = asf.point_names
        own_parents = [-1] + [own_names.index(p) for p in asf.parents]
        bone_end = {name: i for i, name in enumerate(own_names)}
        table = _cmu_tables()["asf_points"]
        absent = [j for j in (skeleton.joints if skeleton else ()) if table.get(j) not in bone_end]
        if absent:
            raise PosekitError(f"{asf.path}: no bone {table.get(absent[0])!r} for joint {absent[0]!r} "
                               f"of skeleton {_CMU_SKELETON!r} (pass skeleton=None to keep the "
                               "file's own joints)")
        column = {joint: bone_end[bone] for joint, bone in table.items() if bone in bone_end}
    elif suffix == ".asf":
        raise PosekitError(f"{path}: an ASF holds only the skeleton; read the .amc with asf={path}")
    else:
        raise PosekitError(f"{path}: unknown motion-capture format {suffix!r} (expected .bvh or .amc)")
    if skeleton is None:
        return Motion(_own_skeleton(path.stem, own_names, own_parents), positions,
                      _check_fps(rate, path), meta)
    missing = [j for j in skeleton.joints if j not in column]
    if missing:
        raise PosekitError(f"{path}: has no counterpart of joint {missing[0]!r} of skeleton "
                           f"{skeleton.name!r} (pass skeleton=None to keep the file's own joints)")
    return Motion(skeleton, positions[:, [column[j] for j in skeleton.joints]],
                  _check_fps(rate, path), meta)


def _check_fps(fps, path) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise PosekitError(f"{path}: fps must be a positive number, got {fps!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise PosekitError(f"{path}: fps must be a positive number, got {fps!r}")
    return value


# ------------------------------------------------------------------------------ NRSfM (Akhter et al.)

@dataclass
class NrsfmSequence:
    """One Akhter et al. NRSfM benchmark sequence, per frame.

    S (F, P, 3) 3D points as stored (divided by ``scale``); W (F, P, 2) orthographic 2D tracks,
    centred per frame; Rs (F, 2, 3) camera rotation rows, with W = Rs @ (S - per-frame centroid);
    bones (B, 2) 0-based point pairs; scale: the divisor applied to the original data;
    S_original = S * scale (units not documented by the source).
    """

    path: str
    S: np.ndarray
    W: np.ndarray
    Rs: np.ndarray
    bones: np.ndarray
    scale: float

    @property
    def S_original(self) -> np.ndarray:
        return self.S * self.scale

    @property
    def num_frames(self) -> int:
        return len(self.S)


def read_nrsfm_mat(path) -> NrsfmSequence:
    """Read an NRSfM ``.mat`` (``S`` 3F x P, ``W`` 2F x P, ``Rs`` 2F x 3, ``list`` 1-based, ``scale``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise PosekitError(f"{path}: no such NRSfM .mat file")
    try:
        data = loadmat(str(path), appendmat=False)
    except Exception as exc:                 # scipy raises many types for a corrupt or foreign file
        reason = " ".join(str(exc).split())[:120]
        raise PosekitError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: "
                           f"{reason})") from None

    def array(key: str, columns: int | None = None) -> np.ndarray:
        if key not in data:
            raise PosekitError(f"{path}: no variable {key!r}")
        try:
            value = np.asarray(data[key], dtype=float)
        except (TypeError, ValueError):
            raise PosekitError(f"{path}: variable {key!r} is not numeric") from None
        if value.ndim != 2 or (columns is not None and value.shape[1] != columns):
            want = f"(rows, {columns})" if columns is not None else "a 2-D matrix"
            raise PosekitError(f"{path}: variable {key!r} has shape {value.shape}, expected {want}")
        if not np.all(np.isfinite(value)):
            raise PosekitError(f"{path}: variable {key!r} has non-finite values")
        return value

    S, W, Rs, pairs, scale = array("S"), array("W"), array("Rs", 3), array("list", 2), array("scale")
    num_frames, num_points = S.shape[0] // 3, S.shape[1]
    if S.shape[0] % 3 or num_frames == 0:
        raise PosekitError(f"{path}: 'S' has {S.shape[0]} rows, expected 3 per frame")
    if W.shape != (2 * num_frames, num_points):
        raise PosekitError(f"{path}: 'W' has shape {W.shape}, expected {(2 * num_frames, num_points)}")
    if Rs.shape != (2 * num_frames, 3):
        raise PosekitError(f"{path}: 'Rs' has shape {Rs.shape}, expected {(2 * num_frames, 3)}")
    if scale.size != 1 or not scale.item() > 0:
        raise PosekitError(f"{path}: 'scale' must be one positive number")
    if np.any(pairs != np.round(pairs)) or np.any(pairs < 1) or np.any(pairs > num_points):
        raise PosekitError(f"{path}: 'list' must hold 1-based point indices in 1..{num_points}")
    return NrsfmSequence(
        path=str(path), S=S.reshape(num_frames, 3, num_points).transpose(0, 2, 1),
        W=W.reshape(num_frames, 2, num_points).transpose(0, 2, 1),
        Rs=Rs.reshape(num_frames, 2, 3), bones=pairs.astype(int) - 1, scale=float(scale.item()))


# ----------------------------------------------------------------------------------------- BVH output

CAMERA_TO_Y_UP = np.diag([1.0, -1.0, -1.0])
"""posekit camera axes (x right, y down, z forward) to the BVH frame (X right, Y up, Z toward the
camera): a half turn about x, so ``(x, y, z) -> (x, -y, -z)``; a person facing the camera faces +Z."""

_STRAIGHT = 0.2            # sine of the angle under which a rest reference counts as along its bone
_PLANE_OBSERVABLE = 0.1    # summed sines of bend under which the plane of a limb is not observable
_RANK_RATIO = 1e-3         # child directions whose 2nd singular value is under this ratio are collinear
_SAME_DIRECTION = math.cos(math.radians(0.1))  # children this close in every frame lie along one bone
_END_SITE_FRACTION = 0.25  # End Site = the leaf bone continued by this fraction of its length


def _tpose(skeleton: Skeleton, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical rest direction of the bone ending at each joint, and the way it bends, Y-up facing +Z.

    Bones to unsided joints point up (spine, neck, head); the first bone of a left/right chain points
    sideways (+X left); further bones point down in chains hanging from the root (legs: joints joined
    to the root by zero-length bones count as the root) and sideways in the others (arms): a T-pose.
    Knees bend backward (-Z), every other joint forward (+Z). ``moving``: bones of non-zero length.
    """
    sides, parents = skeleton.sides, skeleton.parents
    directions = np.zeros((len(parents), 3))
    bends = np.tile([0.0, 0.0, 1.0], (len(parents), 1))
    for child, parent in enumerate(parents):
        if parent < 0:
            continue
        if sides[child] == 0:
            directions[child] = (0.0, 1.0, 0.0)
            continue
        attach = parent
        while (sides[attach] != 0 or not moving[attach]) and parents[attach] >= 0:
            attach = parents[attach]
        leg = parents[attach] < 0 and sides[attach] == 0
        if sides[parent] != 0 and leg:
            directions[child] = (0.0, -1.0, 0.0)
        else:
            directions[child] = (float(sides[child]), 0.0, 0.0)
        if leg:
            bends[child] = (0.0, 0.0, -1.0)
    return directions, bends


def _unit(vectors: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _perpendicular(vectors: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The part of ``vectors`` orthogonal to the unit ``axis`` (broadcast over leading axes)."""
    return vectors - np.sum(vectors * axis, axis=-1, keepdims=True) * axis


def _swing(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 3, 3) smallest rotations taking the unit vector ``source`` (3,) onto unit ``target`` (T, 3):
    two reflections, through the planes normal to ``source`` and to the half-way vector. Opposite
    vectors (no unique smallest rotation) turn half-way about an axis normal to ``source``."""
    halfway = source + target
    length = np.linalg.norm(halfway, axis=-1, keepdims=True)
    normal = np.eye(3)[np.argmin(np.abs(source))]
    fallback = _unit(_perpendicular(normal, source))
    halfway = np.where(length > 1e-6, halfway / np.maximum(length, 1e-300), fallback)
    reflect_source = np.eye(3) - 2.0 * np.outer(source, source)
    reflect_half = np.eye(3) - 2.0 * halfway[:, :, None] * halfway[:, None, :]
    return reflect_half @ reflect_source


def _about(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations by ``angle`` (T,) radians about unit ``axis`` (T, 3) (Rodrigues)."""
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = np.zeros_like(x)
    cross = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                      np.stack([-y, x, zero], -1)], -2)
    return cos * np.eye(3) + sin * cross + (1.0 - cos) * axis[:, :, None] * axis[:, None, :]


def _fit_rotations(rest: np.ndarray, observed: np.ndarray, weights: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (T, 3, 3) that best turn ``rest`` directions (C, 3) onto ``observed`` (T, C, 3) in
    weighted least squares (Kabsch, reflection excluded); missing (NaN) directions weigh nothing.
    Also (T,) whether the rotation is unique: the directions used are not all collinear."""
    present = np.all(np.isfinite(observed), axis=-1)
    weight = np.where(present, weights, 0.0)
    cross = np.einsum("tc,tci,cj->tij", weight, np.where(present[..., None], observed, 0.0), rest)
    u, s, vt = np.linalg.svd(cross)
    flip = np.ones((len(cross), 3))
    flip[:, 2] = np.sign(np.linalg.det(u @ vt))
    unique = s[:, 1] > _RANK_RATIO * s[:, 0]
    return (u * flip[:, None, :]) @ vt, unique


def _forward_fill(values: np.ndarray, valid: np.ndarray, first) -> np.ndarray:
    """``values`` (T, ...) with each invalid frame replaced by the last valid one (``first`` before any)."""
    last = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))
    filled = values[np.maximum(last, 0)]
    return np.where((last >= 0).reshape((-1,) + (1,) * (values.ndim - 1)), filled, first)


class _BvhRig:
    """Rest offsets and per-frame local rotations that put a tree's bones along observed directions."""

    def __init__(self, points: np.ndarray, skeleton: Skeleton):
        self.skeleton = skeleton
        parents = skeleton.parents
        self.root = parents.index(-1)
        self.children = [[c for c, p in enumerate(parents) if p == j] for j in range(len(parents))]
        self.order = self._depth_first(self.root)
        self.lengths = self._median_lengths(points)
        scale = self.lengths.max()
        if not scale > 0:
            raise PosekitError(f"positions: every bone of skeleton {skeleton.name!r} has zero length")
        self.moving = self.lengths > 1e-9 * scale
        with np.errstate(invalid="ignore"):
            delta = points - points[:, [max(p, 0) for p in parents]]
            length = np.linalg.norm(delta, axis=-1, keepdims=True)
            self.observed = np.where(length > 1e-9 * scale, delta / np.maximum(length, 1e-300), np.nan)
        self.subtree = np.array([len(self._depth_first(j)) for j in range(len(parents))], dtype=float)
        self.groups = [self._group_children(j) for j in range(len(parents))]
        tpose, self.bends = _tpose(skeleton, self.moving)
        self.rest = self._rest_directions(tpose)
        self.local = self._local_rotations()

    def _depth_first(self, joint: int) -> list[int]:
        order, stack = [], [joint]
        while stack:
            j = stack.pop()
            order.append(j)
            stack.extend(reversed(self.children[j]))
        return order

    def _median_lengths(self, points: np.ndarray) -> np.ndarray:
        lengths = np.zeros(len(self.skeleton.parents))
        for child, parent in enumerate(self.skeleton.parents):
            if parent < 0:
                continue
            bone = np.linalg.norm(points[:, child] - points[:, parent], axis=-1)
            bone = bone[np.isfinite(bone)]
            if not len(bone):
                raise PosekitError(
                    f"positions: bone {self.skeleton.joints[parent]}-{self.skeleton.joints[child]} "
                    "is missing (NaN) in every frame")
            lengths[child] = np.median(bone)
        if not np.isfinite(lengths).all():
            raise PosekitError("positions: values too large for float64 arithmetic")
        return lengths

    def _group_children(self, joint: int) -> list[list[int]]:
        """The children of non-zero length, grouped where they lie along one direction in every frame
        (joints that coincide in skeletons converted from other formats); an unsided child leads."""
        sides = self.skeleton.sides
        kids = sorted((c for c in self.children[joint] if self.moving[c]), key=lambda c: sides[c] != 0)
        groups: list[list[int]] = []
        for kid in kids:
            for group in groups:
                cosine = np.sum(self.observed[:, group[0]] * self.observed[:, kid], axis=-1)
                cosine = cosine[np.isfinite(cosine)]
                if len(cosine) and cosine.min() > _SAME_DIRECTION:
                    group.append(kid)
                    break
            else:
                groups.append([kid])
        return groups

    def euler_order(self, joint: int) -> str:
        """Rotation channel order of a joint: the axis of its only child's rest bone (the twist, which
        stays small) in the middle, where Euler angles are limited to +-90 degrees, so that bends
        about the other two (a knee or elbow past 90 degrees) keep clean angles. ``ZXY`` for the root,
        branching joints and leaves."""
        groups = self.groups[joint]
        if joint == self.root or len(groups) != 1:
            return "ZXY"
        middle = "XYZ"[int(np.argmax(np.abs(self.rest[groups[0][0]])))]
        return {"X": "ZXY", "Y": "ZYX", "Z": "XZY"}[middle]

    def _weights(self, groups: list[list[int]]) -> np.ndarray:
        """Each group's share of the position error of all joints its direction carries."""
        return np.array([np.sum(self.subtree[g] * self.lengths[g] ** 2) for g in groups])

    def _rest_directions(self, tpose: np.ndarray) -> np.ndarray:
        """T-pose directions, except that the children of a branching joint keep their median layout
        around it (hips and spine, shoulders and neck), so that a rigid layout is reproduced; children
        along one direction share their leader's."""
        rest = tpose.copy()
        for joint in self.order:
            groups = self.groups[joint]
            leads = [g[0] for g in groups]
            if len(groups) > 1:
                observed = self.observed[:, leads]
                rotation, unique = _fit_rotations(tpose[leads], observed, self._weights(groups))
                in_rest = np.einsum("tji,tcj->tci", rotation, observed)[unique]
                for column, lead in enumerate(leads):
                    seen = in_rest[:, column]
                    seen = seen[np.isfinite(seen).all(axis=1)]
                    if len(seen):
                        rest[lead] = _unit(np.median(seen, axis=0))
            for group in groups:
                rest[group] = rest[group[0]]
        return rest

    def _twist_references(self, group: list[int]) -> list[tuple[int, np.ndarray]]:
        """(grandchild, rest reference normal to the group's bone): the grandchild's own direction, or
        the way the child's joint bends where the two bones are straight in the rest pose."""
        axis = self.rest[group[0]]
        references = []
        for child in group:
            for grandchild in (g for subgroup in self.groups[child] for g in subgroup):
                reference = _perpendicular(self.rest[grandchild], axis)
                if np.linalg.norm(reference) < _STRAIGHT:
                    reference = _perpendicular(self.bends[child], axis)
                if np.linalg.norm(reference) > _STRAIGHT:
                    references.append((grandchild, reference / np.linalg.norm(reference)))
        return references

    def _local_rotations(self) -> np.ndarray:
        num_frames, num_joints = self.observed.shape[:2]
        identity = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        local = np.empty((num_frames, num_joints, 3, 3))
        world = np.empty_like(local)
        for joint in self.order:
            parent = self.skeleton.parents[joint]
            parent_world = identity if parent < 0 else world[:, parent]
            groups = self.groups[joint]
            leads = [g[0] for g in groups]
            if not groups:
                rotation, valid = identity, np.ones(num_frames, dtype=bool)
            elif len(groups) > 1:
                fitted, valid = _fit_rotations(self.rest[leads], self.observed[:, leads], self._weights(groups))
                rotation = np.swapaxes(parent_world, 1, 2) @ fitted
            else:
                rotation, valid = self._bone_rotation(groups[0], parent_world)
            local[:, joint] = _forward_fill(rotation, valid, np.eye(3))
            world[:, joint] = parent_world @ local[:, joint]
        return local

    def _bone_rotation(self, group: list[int], parent_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local rotation of a joint with one child (or children along one bone): the smallest turn of
        the rest bone onto the observed one, then a twist about it that best lines up the grandchildren
        (the plane of the limb). Where that plane is not observable (a straight limb, no grandchild)
        the twist of the previous frame is kept (none in the first frame)."""
        to_parent = np.swapaxes(parent_world, 1, 2)
        target = np.einsum("tij,tj->ti", to_parent, self.observed[:, group[0]])
        valid = np.all(np.isfinite(target), axis=-1)
        target = np.where(valid[:, None], target, self.rest[group[0]])
        swing = _swing(self.rest[group[0]], target)
        sine = np.zeros(len(target))
        cosine = np.zeros(len(target))
        for grandchild, reference in self._twist_references(group):
            turned = swing @ reference
            seen = _perpendicular(np.einsum("tij,tj->ti", to_parent, self.observed[:, grandchild]), target)
            seen = np.nan_to_num(seen)
            sine += np.einsum("ti,ti->t", target, np.cross(turned, seen))
            cosine += np.einsum("ti,ti->t", turned, seen)
        observable = valid & (np.hypot(sine, cosine) > _PLANE_OBSERVABLE)
        twist = _forward_fill(np.arctan2(sine, cosine), observable, 0.0)
        return _about(target, twist) @ swing, valid


def _bvh_points(positions, skeleton: Skeleton) -> np.ndarray:
    try:
        points = np.asarray(positions, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError("positions: not a numeric array") from None
    if points.ndim != 3 or points.shape[1:] != (len(skeleton), 3):
        raise PosekitError(f"positions: expected (T, {len(skeleton)}, 3) for skeleton "
                           f"{skeleton.name!r}, got {points.shape}")
    if len(points) == 0:
        raise PosekitError("positions: no frames (T == 0)")
    if np.isinf(points).any():
        raise PosekitError("positions: infinite values (use NaN for missing joints)")
    if np.isnan(points).all():
        raise PosekitError("positions: every value is NaN")
    return points @ CAMERA_TO_Y_UP.T


def _bvh_name(name: str) -> str:
    if not name or re.search(r"[\s{}#]", name):
        raise PosekitError(f"joint name {name!r} cannot be written to BVH (whitespace, braces or '#')")
    return name


def _offset_line(indent: str, offset) -> str:
    return f"{indent}OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}\n"


def write_bvh(path, positions, skeleton="h36m17", fps: float = 30.0, *,
              root_translation=None) -> None:
    """Write joint positions (T, K, 3) in millimetres, posekit camera axes, as a BVH animation.

    Axes: the file is Y-up as BVH tools expect, ``(X, Y, Z) = (x, -y, -z)`` of the camera axes
    (x right, y down, z forward): X right, Y up, Z toward the camera, right-handed; a person facing the
    camera faces +Z. Units stay millimetres (in Blender's BVH import, set Scale to 0.001 for metres).

    Hierarchy: ROOT at the skeleton's root joint, one JOINT per joint along ``skeleton.parents``,
    an End Site after every leaf continuing its bone by a quarter of its length. OFFSETs are the median
    bone lengths over the sequence along a T-pose rest: unsided bones up, the first bone of a left/right
    chain sideways (+X left), legs down, arms sideways; the children of a branching joint (pelvis,
    thorax) keep their median layout around it instead, so a rigid layout is reproduced exactly.
    CHANNELS: the root ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``; every other
    joint three rotations (degrees, applied in the listed order: ``Zrotation Yrotation Xrotation`` is
    Rz Ry Rx), ordered with the axis of its child bone in the middle (``ZYX`` for hips, knees, spine
    and neck, ``ZXY`` for shoulders, elbows, branching joints and leaves) so that bends past 90
    degrees keep clean angles; angles are unwrapped over time (no 360-degree jumps).

    Rotations: a joint with one child turns its rest bone onto the observed bone by the smallest
    rotation, then twists about it to line up its grandchildren (for hips and shoulders, the plane of
    the leg or arm, so knees and elbows become hinges); a branching joint takes the least-squares
    rotation of all its child directions, weighting each by the squared position error it causes in
    the joints it carries. Positions cannot show the twist of a bone whose limb is straight or that
    has no grandchild: there the previous frame's twist is kept (none at first), and the written
    positions are the same whatever it is. A missing (NaN) joint keeps the previous frame's local
    rotation for the joints that need it (the rest pose before any frame has it); nothing NaN is written.

    Only positions relative to the root matter: the root's own position in ``positions`` is not
    written. root_translation: (T, 3) mm, the root's position in the same camera axes (converted like
    the positions); default zeros: the root stays at the origin, the motion in place.
    """
    skeleton = get_skeleton(skeleton)
    if skeleton.parents is None:
        raise PosekitError(f"skeleton {skeleton.name!r} has no kinematic tree ('parents'); "
                           "BVH needs one")
    names = [_bvh_name(n) for n in skeleton.joints]
    points = _bvh_points(positions, skeleton)
    rate = _check_fps(fps, "write_bvh")
    num_frames = len(points)
    if root_translation is None:
        translation = np.zeros((num_frames, 3))
    else:
        try:
            translation = np.asarray(root_translation, dtype=float)
        except (TypeError, ValueError):
            raise PosekitError("root_translation: not a numeric array") from None
        if translation.shape != (num_frames, 3):
            raise PosekitError(f"root_translation: expected ({num_frames}, 3), got {translation.shape}")
        if not np.isfinite(translation).all():
            raise PosekitError("root_translation: contains NaN or infinite values")
        translation = translation @ CAMERA_TO_Y_UP.T

    rig = _BvhRig(points, skeleton)
    offsets = rig.rest * rig.lengths[:, None]
    lines = ["HIERARCHY\n"]

    def emit(joint: int, depth: int) -> None:
        indent = "\t" * depth
        root = depth == 0
        lines.append(f"{indent}{'ROOT' if root else 'JOINT'} {names[joint]}\n{indent}{{\n")
        lines.append(_offset_line(indent + "\t", np.zeros(3) if root else offsets[joint]))
        channels = [f"{axis}rotation" for axis in rig.euler_order(joint)]
        if root:
            channels = ["Xposition", "Yposition", "Zposition"] + channels
        lines.append(f"{indent}\tCHANNELS {len(channels)} {' '.join(channels)}\n")
        for child in rig.children[joint]:
            emit(child, depth + 1)
        if not rig.children[joint]:
            lines.append(f"{indent}\tEnd Site\n{indent}\t{{\n")
            lines.append(_offset_line(indent + "\t\t", offsets[joint] * _END_SITE_FRACTION))
            lines.append(f"{indent}\t}}\n")
        lines.append(f"{indent}}}\n")

    emit(rig.root, 0)
    angles = np.concatenate([euler_from_rotation_matrix(rig.local[:, j], rig.euler_order(j))
                             for j in rig.order], axis=1)
    angles = np.unwrap(angles, period=360.0, axis=0)
    table = np.concatenate([translation, angles], axis=1)
    lines.append(f"MOTION\nFrames: {num_frames}\nFrame Time: {1.0 / rate:.9g}\n")
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
            np.savetxt(handle, table, fmt="%.6f")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write the BVH file ({exc.strerror or type(exc).__name__})"
                           ) from None


__all__ = ["CMU_UNITS_TO_MM", "CMU_AMC_FPS", "INCH_TO_MM", "BvhMotion", "read_bvh", "bvh_positions",
           "is_synthetic_tpose", "rebuild_bvh_offsets", "AsfBone", "AsfSkeleton", "read_asf",
           "AmcMotion", "read_amc", "asf_amc_positions", "read_mocap", "NrsfmSequence",
           "read_nrsfm_mat", "write_bvh", "CAMERA_TO_Y_UP"]
