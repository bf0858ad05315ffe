"""The MCM-RR replication: CRA, CRA-EN, CRA-SC and MCM-RR on real motion capture, per category.

Protocol (values in ``defaults.yaml``, section ``benchmark``; the article states none of them):

* Sequences and categories come from a manifest (``shared_mocap.yaml`` for the shared folder, a
  user's YAML, or one folder per category); CMU trials are converted to the h36m17 joints.
* Leave one sequence out: the bases of a test sequence are learned from the other sequences of its
  pool, never from the test sequence. A sequence alone in its pool (the Akhter files, each with its
  own point order) is split in time: bases from the first part, test on the rest.
* Training frames are taken at ``train_rate_hz`` and test frames at ``test_rate_hz`` (every frame
  when the rate is unknown).
* Camera: orthographic projection after an independent, uniformly random rotation per frame (seeded),
  so no viewpoint is favoured and every frame is a single-image problem, as in the article's
  per-frame model.
* Errors per frame, after the best rotation-or-reflection + translation (no scale, so a shrunken
  reconstruction is charged): xi of Eq. 23 (in cm^2 for millimetre data, else in the data's units^2)
  and the normalised error ||S~ - S|| / ||S - mean S||; a category reports the mean and the
  population std over all its test frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from posekit.errors import PosekitError
from posekit.metrics.nrsfm import normalized_shape_error, shape_error_xi
from posekit.nrsfm.bases import learn_elastic_net_bases, learn_sparse_coding_bases
from posekit.nrsfm.mcm_rr import (BASES_FOR_METHOD, METHODS, default_bases_parameters,
                                  load_defaults, reconstruct)

SHARED_MANIFEST = Path(__file__).with_name("shared_mocap.yaml")
SHARED_LAYOUT = ("cmu_asfamc", "cmu_bvh", "nrsfm_akhter", "other_bvh")
MANIFEST_NAME = "nrsfm_categories.yaml"
_FORMATS = (".amc", ".bvh", ".mat", ".npz")


# ------------------------------------------------------------------------------------- sequences

@dataclass
class SequenceSpec:
    """One sequence of the benchmark: where it is and how to read it."""

    category: str
    path: Path
    asf: Path | None = None
    rebuild_offsets_from: Path | None = None
    skeleton: str | None = None
    pool: str | None = None
    paper_row: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Sequence:
    """A loaded sequence: points (T, P, 3), frame rate (None if unknown), unit ("mm" or ""), the
    pool it trains and tests within, and its bones (B, 2) for figures."""

    spec: SequenceSpec
    points: np.ndarray
    fps: float | None
    unit: str
    pool: str
    bones: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=int))


def _path(value, base: Path, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise PosekitError(f"{where}: '{key}' must be a file path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def read_manifest(path, root=None) -> tuple[list[SequenceSpec], str]:
    """A YAML manifest: ``sequences: [{category, file, asf?, rebuild_offsets_from?, skeleton?, pool?,
    paper_row?}, ...]`` and an optional ``joint_set``; paths are relative to ``root`` (default: the
    manifest's folder). Returns (specs, joint_set)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PosekitError(f"{path}: not a readable YAML manifest ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("sequences"), list):
        raise PosekitError(f"{path}: expected a mapping with a 'sequences' list")
    base = Path(root) if root is not None else path.parent
    joint_set = data.get("joint_set", "h36m17")
    specs = []
    allowed = {"category", "file", "asf", "rebuild_offsets_from", "skeleton", "pool", "paper_row"}
    for i, entry in enumerate(data["sequences"]):
        where = f"{path}: sequences[{i}]"
        if not isinstance(entry, dict):
            raise PosekitError(f"{where}: expected a mapping with 'category' and 'file'")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise PosekitError(f"{where}: unknown field(s) {', '.join(unknown)}")
        category = entry.get("category")
        if not isinstance(category, str) or not category:
            raise PosekitError(f"{where}: 'category' must be a non-empty string")
        specs.append(SequenceSpec(
            category=category, path=_path(entry.get("file"), base, where, "file"),
            asf=_path(entry["asf"], base, where, "asf") if "asf" in entry else None,
            rebuild_offsets_from=_path(entry["rebuild_offsets_from"], base, where,
                                       "rebuild_offsets_from")
            if "rebuild_offsets_from" in entry else None,
            skeleton=entry.get("skeleton"), pool=entry.get("pool"), paper_row=entry.get("paper_row")))
    return specs, joint_set


def _subject_asf(amc: Path) -> Path:
    """The ASF of a CMU trial ``SS_TT.amc``: ``SS.asf`` beside it (or the folder's only .asf)."""
    candidates = sorted(amc.parent.glob("*.asf"))
    by_name = amc.parent / f"{amc.stem.split('_')[0]}.asf"
    if by_name.is_file():
        return by_name
    if len(candidates) == 1:
        return candidates[0]
    raise PosekitError(f"{amc}: cannot tell which .asf skeleton it needs (expected "
                       f"{by_name.name}, or a single .asf in {amc.parent})")


def category_folder_specs(folder, skip=()) -> list[SequenceSpec]:
    """Sequences of a folder-per-category layout: ``<folder>/<category>/*.{amc,bvh,mat,npz}``
    (sub-folders named in ``skip`` left out)."""
    specs = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and p.name not in skip):
        for file in sorted(sub.iterdir()):
            if file.suffix.lower() in _FORMATS:
                asf = _subject_asf(file) if file.suffix.lower() == ".amc" else None
                specs.append(SequenceSpec(category=sub.name, path=file, asf=asf))
    return specs


def discover(folder, manifests=()) -> tuple[list[SequenceSpec], str]:
    """The benchmark's sequences for ``folder``: its ``nrsfm_categories.yaml`` if present; else the
    built-in manifest for the shared layout plus any other sub-folder as a category; else one
    category per sub-folder. Extra ``manifests`` add their sequences."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PosekitError(f"{folder}: no such folder")
    joint_set = "h36m17"
    if (folder / MANIFEST_NAME).is_file():
        specs, joint_set = read_manifest(folder / MANIFEST_NAME)
    elif any((folder / name).is_dir() for name in SHARED_LAYOUT):
        specs, joint_set = read_manifest(SHARED_MANIFEST, root=folder)
        specs += category_folder_specs(folder, skip=SHARED_LAYOUT)
    else:
        specs = category_folder_specs(folder)
    for manifest in manifests:
        more, _ = read_manifest(manifest)
        specs += more
    if not specs:
        raise PosekitError(f"{folder}: no sequences found (expected {MANIFEST_NAME}, the shared "
                           "mocap layout, or one sub-folder of .amc/.bvh/.mat/.npz files per category)")
    return specs, joint_set


def load_sequence(spec: SequenceSpec, joint_set: str) -> Sequence:
    """Read one sequence as points (T, P, 3): motion capture in ``joint_set``, .mat markers as stored."""
    from posekit.data.mocap import read_mocap, read_nrsfm_mat
    from posekit.skeletons import convert_keypoints, get_skeleton

    suffix = spec.path.suffix.lower()
    if suffix in (".amc", ".bvh"):
        motion = read_mocap(spec.path, asf=spec.asf, rebuild_offsets_from=spec.rebuild_offsets_from)
        points = convert_keypoints(motion.positions, None, motion.skeleton.name, joint_set)[0]
        return Sequence(spec, points, motion.fps, "mm", spec.pool or joint_set,
                        get_skeleton(joint_set).bone_array)
    if suffix == ".mat":
        data = read_nrsfm_mat(spec.path)
        return Sequence(spec, data.S, None, "", spec.pool or str(spec.path), data.bones)
    if suffix == ".npz":
        from posekit.io.arrays import read_npz_array

        points = read_npz_array(spec.path, "keypoints_3d", ndim=3, last_dim=3)
        if spec.skeleton and get_skeleton(spec.skeleton).name != get_skeleton(joint_set).name:
            points = convert_keypoints(points, None, spec.skeleton, joint_set)[0]
        in_joint_set = points.shape[1] == len(get_skeleton(joint_set))
        pool = spec.pool or (joint_set if in_joint_set else str(spec.path))
        bones = get_skeleton(joint_set).bone_array if in_joint_set else np.zeros((0, 2), dtype=int)
        return Sequence(spec, points, None, "", pool, bones)
    raise PosekitError(f"{spec.path}: unsupported sequence format {suffix!r} "
                       f"(expected one of {', '.join(_FORMATS)})")


# -------------------------------------------------------------------------------------- protocol

def benchmark_protocol(quick: bool = False) -> dict:
    """The protocol values of ``defaults.yaml`` (with the ``quick`` overrides when asked)."""
    table = load_defaults()["benchmark"]
    protocol = {k: v for k, v in table.items() if k != "quick"}
    if quick:
        protocol.update(table["quick"])
    return protocol


def _stride(fps: float | None, rate_hz: float) -> int:
    return 1 if fps is None else max(1, int(round(fps / rate_hz)))


def random_rotations(count: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotations (count, 3, 3) from normalised Gaussian quaternions."""
    from posekit.geometry.rotations import quaternion_to_matrix

    q = rng.normal(size=(count, 4))
    return quaternion_to_matrix(q / np.linalg.norm(q, axis=1, keepdims=True))


def project_sequence(points, rng: np.random.Generator):
    """The camera protocol: one random rotation per frame, orthographic projection.
    Returns (keypoints (T, P, 2), ground truth in the camera frame (T, P, 3), rotations)."""
    from posekit.geometry.camera import orthographic_project

    rotations = random_rotations(len(points), rng)
    camera = points @ np.swapaxes(rotations, 1, 2)
    return orthographic_project(camera), camera, rotations


@dataclass
class Fold:
    """One test sequence with the training shapes its bases are learned from."""

    test: Sequence
    test_points: np.ndarray
    train_points: np.ndarray
    split: str


def make_folds(sequences: list[Sequence], protocol: dict) -> list[Fold]:
    """Leave one sequence out within each pool; a sequence alone in its pool is split in time."""
    folds = []
    tested_categories = set()
    for seq in sequences:
        if protocol["one_sequence_per_category"] and seq.spec.category in tested_categories:
            continue
        tested_categories.add(seq.spec.category)
        others = [s for s in sequences if s is not seq and s.pool == seq.pool]
        mixed = [s for s in others if s.points.shape[1] != seq.points.shape[1]]
        if mixed:
            raise PosekitError(f"{seq.spec.path}: has {seq.points.shape[1]} points but "
                               f"{mixed[0].spec.path} of the same pool {seq.pool!r} has "
                               f"{mixed[0].points.shape[1]}; give them different pools")
        if others:
            train = np.concatenate([s.points[::_stride(s.fps, protocol["train_rate_hz"])]
                                    for s in others])
            test = seq.points
            split = "leave-one-sequence-out"
        else:
            cut = int(round(len(seq.points) * protocol["temporal_split"]))
            if cut < 2 or cut >= len(seq.points):
                raise PosekitError(f"{seq.spec.path}: too few frames ({len(seq.points)}) to split "
                                   "in time; add another sequence to its pool")
            train = seq.points[:cut][::_stride(seq.fps, protocol["train_rate_hz"])]
            test = seq.points[cut:]
            split = f"temporal ({protocol['temporal_split']:.0%} train)"
        test = test[::_stride(seq.fps, protocol["test_rate_hz"])]
        if protocol.get("max_test_frames"):
            test = test[np.linspace(0, len(test) - 1, min(len(test), protocol["max_test_frames"]))
                        .round().astype(int)]
        if protocol.get("max_train_frames") and len(train) > protocol["max_train_frames"]:
            train = train[np.linspace(0, len(train) - 1, protocol["max_train_frames"])
                          .round().astype(int)]
        folds.append(Fold(seq, test, train, split))
    return folds


# --------------------------------------------------------------------------------------- running

@dataclass
class MethodErrors:
    """Per-frame errors of one method on one fold."""

    xi: np.ndarray
    normalized: np.ndarray
    seconds: float
    shapes: np.ndarray


@dataclass
class FoldResult:
    """A fold's input (keypoints), ground truth in the camera frame, the cameras' rotations and the
    errors of each method."""

    fold: Fold
    keypoints: np.ndarray
    ground_truth: np.ndarray
    rotations: np.ndarray
    methods: dict = field(default_factory=dict)


def learn_fold_bases(train, coding: str, protocol: dict, seed: int):
    """Bases of one coding from a fold's training shapes, with the defaults.yaml parameters
    (K capped at half the training frames; ``protocol["bases_iterations"]`` overrides n_iter)."""
    params = default_bases_parameters(coding)
    k = min(int(params.pop("k")), len(train) // 2)
    if protocol.get("bases_iterations"):
        params["n_iter"] = protocol["bases_iterations"]
    params["seed"] = seed
    if coding == "elastic-net":
        return learn_elastic_net_bases(train, k, **params)
    return learn_sparse_coding_bases(train, k, **params)


def run_fold(fold: Fold, protocol: dict, seed: int, methods=METHODS) -> FoldResult:
    """Learn both kinds of bases on the fold's training shapes, project the test sequence, and
    reconstruct it with every method."""
    rng = np.random.default_rng(seed)
    keypoints, camera, rotations = project_sequence(fold.test_points, rng)
    gt = camera - camera.mean(axis=1, keepdims=True)
    bases = {coding: learn_fold_bases(fold.train_points, coding, protocol, seed)
             for coding in sorted({BASES_FOR_METHOD[m] for m in methods})}
    unit_scale = 0.01 if fold.test.unit == "mm" else 1.0
    result = FoldResult(fold, keypoints, gt, rotations)
    for method in methods:
        start = time.perf_counter()
        rec = reconstruct(keypoints, bases[BASES_FOR_METHOD[method]], method)
        seconds = time.perf_counter() - start
        xi = shape_error_xi(rec.shapes, gt, align="orthogonal")["per_frame"] * unit_scale
        normalized = normalized_shape_error(rec.shapes, gt)["per_frame"]
        result.methods[method] = MethodErrors(xi, normalized, seconds, rec.shapes)
    return result


def summarize(results: list[FoldResult], methods=METHODS) -> dict:
    """{category: {method: {"xi", "xi_std", "normalized"}}}: statistics over the category's frames."""
    summary = {}
    for category in dict.fromkeys(r.fold.test.spec.category for r in results):
        rows = [r for r in results if r.fold.test.spec.category == category]
        summary[category] = {}
        for method in methods:
            xi = np.concatenate([r.methods[method].xi for r in rows])
            normalized = np.concatenate([r.methods[method].normalized for r in rows])
            summary[category][method] = {"xi": float(xi.mean()), "xi_std": float(xi.std()),
                                         "normalized": float(normalized.mean())}
    return summary


def run_benchmark(folder, *, quick: bool = False, manifests=(), methods=METHODS,
                  progress=None) -> tuple[dict, list[FoldResult], dict]:
    """Run the replication on ``folder``. Returns (summary, fold results, protocol)."""
    protocol = benchmark_protocol(quick)
    specs, joint_set = discover(folder, manifests)
    sequences = [load_sequence(spec, joint_set) for spec in specs]
    results = []
    for index, fold in enumerate(make_folds(sequences, protocol)):
        if progress:
            progress(f"{fold.test.spec.category}: {fold.test.spec.name} ({fold.split}, "
                     f"{len(fold.train_points)} training / {len(fold.test_points)} test frames)")
        results.append(run_fold(fold, protocol, protocol["seed"] + index, methods))
    return summarize(results, methods), results, protocol


def write_plots(results: list[FoldResult], folder) -> list[Path]:
    """Per fold: normalised error per frame of every method, and the frame of median MCM-RR error
    seen from three viewpoints against the ground truth (the article's Figure 2)."""
    from posekit.nrsfm.plots import plot_error_curves, plot_frame_views

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        spec = r.fold.test.spec
        stem = f"{spec.category}_{spec.name}"
        curves = {m: e.normalized for m, e in r.methods.items()}
        written.append(plot_error_curves(curves, folder / f"{stem}_errors.png",
                                         ylabel="normalised error", title=f"{spec.category} {spec.name}"))
        method = "mcm-rr" if "mcm-rr" in r.methods else next(iter(r.methods))
        errors = r.methods[method].normalized
        frame = int(np.argsort(errors)[len(errors) // 2])
        # Drawn in the capture's frame (the camera rotation undone), upright.
        world = r.rotations[frame]
        written.append(plot_frame_views(
            r.methods[method].shapes[frame] @ world, r.ground_truth[frame] @ world,
            folder / f"{stem}_frame.png", bones=r.fold.test.bones,
            title=f"{spec.category} {spec.name}, test frame {frame}: {method} (+) and real (o), "
                  f"error {errors[frame]:.3f}"))
    return written


def paper_tables() -> dict:
    """The article's Table 3 (and Table 1's CRA / MCM-RR columns): {row: {method: [mean, std]}}."""
    return load_defaults()["paper"]


def format_report(summary: dict, results: list[FoldResult], protocol: dict) -> str:
    """A plain-text table per category beside the article's values."""
    paper = paper_tables()
    lines = ["NRSfM replication (xi: Eq. 23 after rotation/reflection alignment, cm^2 for CMU "
             "millimetres, stored units^2 for .mat; norm: ||S~-S||/||S||)"]
    for category, methods in summary.items():
        rows = [r for r in results if r.fold.test.spec.category == category]
        spec = rows[0].fold.test.spec
        names = ", ".join(f"{r.fold.test.spec.name} [{r.fold.split}]" for r in rows)
        lines.append(f"\n{category}: {names}")
        reference = paper.get(spec.paper_row, {}) if spec.paper_row else {}
        base = methods.get("cra", {}).get("xi")
        for method, stats in methods.items():
            change = "" if base in (None, 0) or method == "cra" else \
                f"  {(base - stats['xi']) / base:+7.1%} vs CRA"
            ref = reference.get(method)
            ref_text = f"   paper {ref[0]:.2f} +- {ref[1]:.2f}" if ref else ""
            frames = sum(len(r.methods[method].xi) for r in rows)
            ms = 1000 * sum(r.methods[method].seconds for r in rows) / max(frames, 1)
            lines.append(f"  {method:<7} xi {stats['xi']:10.3f} +- {stats['xi_std']:9.3f}   norm "
                         f"{stats['normalized']:.4f}{change}   {ms:5.1f} ms/frame{ref_text}")
    return "\n".join(lines)


__all__ = ["SequenceSpec", "Sequence", "read_manifest", "category_folder_specs", "discover",
           "load_sequence", "benchmark_protocol", "random_rotations", "project_sequence", "Fold",
           "make_folds", "FoldResult", "learn_fold_bases", "run_fold", "summarize", "run_benchmark",
           "write_plots", "paper_tables", "format_report"]
