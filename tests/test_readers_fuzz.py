"""Fuzzing the dataset readers: whatever the file holds, the only exception that escapes is PosekitError.

Each reader gets 1000 generated files: real files with random fields replaced, deleted, truncated or
duplicated; random JSON/Python structures in the right container; and raw bytes (garbage, or a real file
cut short or with bytes changed). Hypothesis draws one seed per case and the file is built from it with
``random.Random(seed)``: generation stays cheap, and a failure prints the seed that reproduces it.
"""
import copy
import io
import json
import pickle
import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posekit.data.h36m import (
    read_h36m_2d,
    read_h36m_3d,
    read_h36m_body3d,
    read_h36m_cameras,
    read_humaneva_2d,
    read_humaneva_3d,
)
from posekit.data.mpii import read_mpii, read_mpii_predictions
from posekit.data.multiview import (
    read_campus_calibration,
    read_campus_gt,
    read_panoptic_body3d,
    read_panoptic_calibration,
)
from posekit.data.posetrack import read_posetrack
from posekit.data.safe_pickle import read_mat, safe_load_npz, safe_load_pickle
from posekit.errors import PosekitError

TEST_DATA = Path(__file__).parent / "data"
CASES = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------- random values

def random_leaf(rng: random.Random):
    return rng.choice([None, True, False, 0, 1, -1, 16, 2**70, rng.uniform(-1e4, 1e4), float("nan"),
                       float("inf"), "", "x", "S1", "12.jpg", "\n", [], {}])


def random_json(rng: random.Random, depth: int = 0):
    """A random JSON value: leaves, number lists of many lengths, nested lists and objects."""
    kind = rng.randrange(5) if depth < 3 else 0
    if kind == 0:
        return random_leaf(rng)
    if kind == 1:
        return [rng.uniform(-1e3, 1e3) for _ in range(rng.choice([0, 1, 2, 4, 16, 32, 51, 76, 80]))]
    if kind == 2:
        return [[rng.uniform(-1e3, 1e3)] * rng.randrange(4) for _ in range(rng.randrange(20))]
    if kind == 3:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["id", "image", "joints", "bbox", "keypoints", "R", "T", "K", "x", ""]):
            random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_array(rng: random.Random, numeric_only: bool = False) -> np.ndarray:
    shape = tuple(rng.choice([0, 1, 2, 3, 14, 16, 17]) for _ in range(rng.randrange(4)))
    dtype = rng.choice(["f8", "f4", "i8", "u1", "?"] + ([] if numeric_only else ["U3", "O"]))
    if dtype == "O":
        return np.array([random_leaf(rng) for _ in range(3)], dtype=object)
    fill = rng.choice([0.0, 1.5, -2.0, float("nan"), 1e3])
    with np.errstate(invalid="ignore"):
        return np.full(shape, fill).astype(dtype) if dtype != "U3" else np.full(shape, "ab")


def random_structure(rng: random.Random, depth: int = 0):
    """Python values a pickle may hold: leaves, arrays, and lists/tuples/dicts of them."""
    kind = rng.randrange(6) if depth < 3 else rng.randrange(2)
    if kind == 0:
        return random_leaf(rng)
    if kind == 1:
        return random_array(rng)
    if kind == 2:
        return [random_structure(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 3:
        return tuple(random_structure(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {rng.choice(["S1", "Walking", 3, ("S1", "x"), None]): random_structure(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def mutated(rng: random.Random, document, make_value=random_json):
    """``document`` after 1-3 edits at random depths: replace, delete, truncate or duplicate."""
    doc = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        parent, key, node = None, None, doc
        while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
            keys = list(node) if isinstance(node, dict) else range(len(node))
            parent, key = node, rng.choice(list(keys))
            node = node[key]
        op = rng.choice(["replace", "delete", "truncate", "duplicate"])
        if parent is None:
            doc = make_value(rng) if op == "replace" else doc
        elif op == "replace":
            parent[key] = make_value(rng)
        elif op == "delete":
            del parent[key]
        elif op == "truncate" and isinstance(node, (list, str)):
            parent[key] = node[:rng.randrange(len(node) + 1)]
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(node))
    return doc


def corrupted(rng: random.Random, data: bytes) -> bytes:
    """``data`` cut short, with a few bytes changed, or replaced by garbage."""
    kind = rng.randrange(3)
    if kind == 0:
        return data[:rng.randrange(len(data) + 1)]
    if kind == 1 and data:
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    return bytes(rng.randrange(256) for _ in range(rng.randrange(300)))


def json_case(rng: random.Random, document) -> bytes:
    """Bytes of a JSON file: mostly a mutated real document, sometimes random JSON or broken bytes."""
    kind = rng.randrange(6)
    if kind < 3:
        return json.dumps(mutated(rng, document)).encode()
    if kind == 3:
        return json.dumps(random_json(rng)).encode()
    return corrupted(rng, json.dumps(document).encode())


def boxed(value) -> np.ndarray:
    """``value`` as the 0-d object array ``np.savez`` makes of a dict."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def mat_bytes(variables: dict, compress: bool) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=compress)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def only_posekit_errors(reader, *args, **kwargs):
    """Run a reader; success and a one-line PosekitError are the only acceptable outcomes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader(*args, **kwargs)
        except PosekitError as exc:
            assert "\n" not in str(exc)


# ---------------------------------------------------------------------------- JSON readers

def _small_panoptic_calibration() -> dict:
    """The first camera of each type of the real Panoptic calibration (the full one has 520)."""
    data = json.loads((TEST_DATA / "panoptic" / "calibration_160906_band1.json").read_text())
    first = {}
    for cam in data["cameras"]:
        first.setdefault(cam["type"], cam)
    return {**data, "cameras": list(first.values())}


@pytest.mark.parametrize("reader, document", [
    (read_mpii, json.loads((TEST_DATA / "mpii" / "test_mpii.json").read_text())),
    (read_posetrack, json.loads((TEST_DATA / "posetrack18" / "012834_mpii_test.json").read_text())),
    (read_panoptic_body3d, json.loads((TEST_DATA / "panoptic" / "body3DScene_00000168.json").read_text())),
    (read_panoptic_calibration, _small_panoptic_calibration()),
    (read_campus_calibration, json.loads((TEST_DATA / "campus" / "calibration_campus.json").read_text())),
], ids=lambda value: getattr(value, "__name__", ""))
def test_fuzz_json_readers(workdir, reader, document):
    target = workdir / f"{reader.__name__}.json"

    @CASES
    @given(seed=SEEDS)
    def run(seed):
        rng = random.Random(seed)
        target.write_bytes(json_case(rng, document))
        options = {}
        if reader is read_panoptic_calibration:
            options["types"] = rng.choice([None, "hd", "vga", ["hd", "kinect-color"], "other"])
        only_posekit_errors(reader, target, **options)
    run()


# ---------------------------------------------------------------------------- MPII with its extra files

@pytest.fixture(scope="module")
def mpii_gt():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_mpii(TEST_DATA / "mpii" / "test_mpii.json")


@CASES
@given(seed=SEEDS)
def test_fuzz_read_mpii_predictions(workdir, mpii_gt, seed):
    rng = random.Random(seed)
    kind = rng.choice([".json", ".npy", ".npz", ".mat", ".txt"])
    if kind == ".json":
        base = [{"image": mpii_gt.images[i].file_name, "joints": [[1.0, 2.0]] * 16} for i in mpii_gt.image_ids]
        data = json_case(rng, base)
    else:
        array = random_array(rng) if rng.random() < 0.7 else np.zeros((5, 16, 2))
        if kind == ".mat":
            data = mat_bytes({rng.choice(["preds", "other"]): array if array.dtype != object else 0},
                             compress=rng.random() < 0.5)
        elif kind == ".npz":
            data = npz_bytes(preds=array, **({"extra": array} if rng.random() < 0.3 else {}))
        else:
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getvalue()
        data = corrupted(rng, data) if rng.random() < 0.3 else data
    target = workdir / f"predictions{kind}"
    target.write_bytes(data)
    only_posekit_errors(read_mpii_predictions, target, mpii_gt)


@CASES
@given(seed=SEEDS)
def test_fuzz_read_mpii_with_head_box_file(workdir, seed):
    rng = random.Random(seed)
    variables = {"headboxes_src": np.full((2, 2, 5), 10.0), "pos_gt_src": np.full((16, 2, 5), 20.0),
                 "jnt_missing": np.ones((16, 5))}
    for name in rng.sample(sorted(variables), rng.randrange(4)):
        if rng.random() < 0.5:
            del variables[name]
        else:
            variables[name] = random_array(rng, numeric_only=True)
    data = mat_bytes(variables, compress=rng.random() < 0.5)
    target = workdir / "mpii_gt_val.mat"
    target.write_bytes(corrupted(rng, data) if rng.random() < 0.4 else data)
    only_posekit_errors(read_mpii, TEST_DATA / "mpii" / "test_mpii.json", headboxes=target)


# ---------------------------------------------------------------------------- pickles and npz archives

def _vp3d_archive(rng: random.Random, two_d: bool) -> bytes:
    """An npz in VideoPose3D's layout with random contents in random places."""
    def poses():
        frames = rng.randrange(4)
        shape = (frames, rng.choice([32, 17, 15, 16]), rng.choice([2, 3]))
        if not two_d:
            return np.zeros(shape, "f4")
        return [np.zeros(shape, "f4") if rng.random() < 0.8 else None for _ in range(rng.randrange(6))]
    content = {rng.choice(["S1", "Train/S1"]): {rng.choice(["Walking", "Box 1 chunk0"]): poses()}}
    kind = rng.randrange(3)
    content = content if kind == 0 else random_structure(rng) if kind == 1 else \
        mutated(rng, content, make_value=random_structure)
    fields = {"positions_2d" if two_d else "positions_3d": boxed(content)}
    if two_d and rng.random() < 0.6:
        metadata = {"layout_name": rng.choice(["h36m", "coco", "humaneva15", "mpii", "other"]),
                    "num_joints": rng.choice([17, 15, 16]), "keypoints_symmetry": [[4, 5, 6], [1, 2, 3]]}
        fields["metadata"] = boxed(mutated(rng, metadata, make_value=random_structure))
    data = npz_bytes(**fields)
    return corrupted(rng, data) if rng.random() < 0.2 else data


@pytest.mark.parametrize("reader, two_d", [(read_h36m_3d, False), (read_humaneva_3d, False),
                                           (read_h36m_2d, True), (read_humaneva_2d, True)],
                         ids=["h36m_3d", "humaneva_3d", "h36m_2d", "humaneva_2d"])
def test_fuzz_videopose3d_archives(workdir, reader, two_d):
    target = workdir / f"{reader.__name__}.npz"

    @CASES
    @given(seed=SEEDS)
    def run(seed):
        target.write_bytes(_vp3d_archive(random.Random(seed), two_d))
        only_posekit_errors(reader, target)
    run()


@CASES
@given(seed=SEEDS)
def test_fuzz_read_h36m_body3d(workdir, seed):
    rng = random.Random(seed)
    fields = dict(np.load(TEST_DATA / "h36m" / "test_h36m_body3d.npz"))
    for name in rng.sample(sorted(fields), rng.randrange(3)):
        if rng.random() < 0.4:
            del fields[name]
        else:
            fields[name] = random_array(rng, numeric_only=True)
    if rng.random() < 0.3:
        fields["imgname"] = np.array([rng.choice(["S1_A.1_2.jpg", "x", "", "S1_Walk.54138969_000001.png"])] * 4)
    data = npz_bytes(**fields)
    target = workdir / "body3d.npz"
    target.write_bytes(corrupted(rng, data) if rng.random() < 0.3 else data)
    only_posekit_errors(read_h36m_body3d, target)


@CASES
@given(seed=SEEDS)
def test_fuzz_read_h36m_cameras(workdir, seed):
    rng = random.Random(seed)
    entry = {"R": np.eye(3), "T": np.ones((3, 1)), "f": np.full((2, 1), 1000.0), "c": np.full((2, 1), 500.0),
             "k": np.zeros((3, 1)), "p": np.zeros((2, 1)), "w": 1000, "h": 1002, "name": "camera1"}
    for name in rng.sample(sorted(entry), rng.randrange(4)):
        entry[name] = random_structure(rng, depth=2)
    kind = rng.randrange(4)
    key = ("S1", "54138969") if kind > 1 else rng.choice([None, 3, "S1", ("S1",), ("S1", 2), ("S1", "a", "b")])
    content = random_structure(rng) if kind == 0 else {key: entry}
    data = pickle.dumps(content, protocol=rng.randrange(6))
    target = workdir / "cameras.pkl"
    target.write_bytes(corrupted(rng, data) if rng.random() < 0.3 else data)
    only_posekit_errors(read_h36m_cameras, target)


@CASES
@given(seed=SEEDS)
def test_fuzz_safe_load_pickle_and_npz(workdir, seed):
    rng = random.Random(seed)
    data = pickle.dumps(random_structure(rng), protocol=rng.randrange(6))
    only_posekit_errors(safe_load_pickle, corrupted(rng, data) if rng.random() < 0.5 else data)
    member = io.BytesIO()
    np.save(member, boxed(random_structure(rng)), allow_pickle=True)
    raw = member.getvalue()
    with zipfile.ZipFile(workdir / "member.npz", "w") as archive:
        archive.writestr(rng.choice(["a.npy", "b", "c/d.npy"]), corrupted(rng, raw) if rng.random() < 0.5 else raw)
    only_posekit_errors(safe_load_npz, workdir / "member.npz")


# ---------------------------------------------------------------------------- MATLAB files

ACTORS_GT = (TEST_DATA / "campus" / "actorsGT.mat").read_bytes()
ACTORS_GT_COMPRESSED = mat_bytes(read_mat(TEST_DATA / "campus" / "actorsGT.mat"), compress=True)


def _cells(rng: random.Random, n_cameras: int) -> np.ndarray:
    """An actors x frames MATLAB cell array with random contents."""
    actors = np.empty((1, rng.randrange(4)), dtype=object)
    for a in range(actors.shape[1]):
        frames = np.empty((rng.randrange(4), 1), dtype=object)
        for f in range(frames.shape[0]):
            kind = rng.randrange(4)
            if kind == 0:
                frames[f, 0] = np.zeros((0, 0))
            elif kind == 1 and n_cameras:
                views = np.empty((1, n_cameras), dtype=object)
                for c in range(n_cameras):
                    views[0, c] = random_array(rng, numeric_only=True) if rng.random() < 0.5 else np.zeros((14, 2))
                frames[f, 0] = views
            elif kind == 2:
                frames[f, 0] = np.ones((14, 2 if n_cameras else 3))
            else:
                frames[f, 0] = random_array(rng, numeric_only=True)
        actors[0, a] = frames
    return actors


@CASES
@given(seed=SEEDS)
def test_fuzz_read_campus_gt(workdir, seed):
    rng = random.Random(seed)
    if rng.random() < 0.4:
        data = corrupted(rng, rng.choice([ACTORS_GT, ACTORS_GT_COMPRESSED]))
    else:
        variables = {"actor3D": _cells(rng, 0)}
        if rng.random() < 0.5:
            variables["actor2D"] = _cells(rng, rng.randint(1, 3))
        if rng.random() < 0.15:
            variables = {rng.choice(["actor3D", "actor2D", "x"]): random_array(rng, numeric_only=True)}
        data = mat_bytes(variables, compress=rng.random() < 0.5)
    target = workdir / "actorsGT.mat"
    target.write_bytes(data)
    only_posekit_errors(read_campus_gt, target)
