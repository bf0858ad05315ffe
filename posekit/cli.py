"""The ``posekit`` command.

Every user mistake surfaces as one ``posekit: error: ...`` line on stderr and exit status 2.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from posekit import __version__
from posekit.errors import PosekitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="posekit: human pose analysis from images, video, cameras and motion capture.")
eval_app = typer.Typer(no_args_is_help=True, help="Score predictions with the field's standard metrics.")
app.add_typer(eval_app, name="eval")


def _version(value: bool):
    if value:
        typer.echo(f"posekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """posekit: human pose analysis."""


def _emit(result: dict, as_json: bool, title: str):
    """One JSON object (``--json``) or an aligned table for people."""
    if as_json:
        typer.echo(json.dumps(result, allow_nan=False, default=_jsonable))
        return
    typer.echo(title)
    width = max(len(k) for k in result)
    for key, value in result.items():
        if isinstance(value, dict):
            typer.echo(f"  {key}:")
            for k2, v2 in value.items():
                typer.echo(f"    {k2:<{width}}  {_fmt(v2)}")
        else:
            typer.echo(f"  {key:<{width}}  {_fmt(value)}")


def _fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def _finite(result: dict) -> dict:
    """JSON has no NaN: report undefined values as null."""
    out = {}
    for k, v in result.items():
        if isinstance(v, dict):
            out[k] = _finite(v)
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


@eval_app.command("coco")
def eval_coco(gt: Path = typer.Option(..., "--gt", help="COCO keypoint annotation file."),
              pred: Path = typer.Option(..., "--pred", help="COCO keypoint results file."),
              sigmas: Optional[Path] = typer.Option(None, "--sigmas",
                                                    help="JSON/YAML list of per-keypoint OKS sigmas."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """COCO OKS AP/AR (the ten numbers pycocotools prints, maxDets 20)."""
    from posekit.data.coco import read_coco_keypoints, read_coco_results
    from posekit.io.arrays import read_number_list
    from posekit.metrics.coco import coco_keypoint_eval

    gt_instances = read_coco_keypoints(gt)
    pred_instances = read_coco_results(pred, gt_instances.skeleton, image_ids=gt_instances.images)
    sig = None
    if sigmas is not None:
        sig = read_number_list(sigmas)
        if len(sig) != len(gt_instances.skeleton):
            raise PosekitError(f"{sigmas}: {len(sig)} sigmas for {len(gt_instances.skeleton)} keypoints")
    result = coco_keypoint_eval(gt_instances, pred_instances, sigmas=sig)
    _emit({k: float(v) for k, v in result.items()}, as_json, f"COCO keypoints: {pred}")


@eval_app.command("pckh")
def eval_pckh(gt: Path = typer.Option(..., "--gt", help="MPII annotations (HRNet/MMPose JSON)."),
              pred: Path = typer.Option(..., "--pred", help="Predictions aligned with the GT entries."),
              headboxes: Optional[Path] = typer.Option(None, "--headboxes",
                                                       help="mpii_gt_val.mat with the head boxes."),
              thr: float = typer.Option(0.5, "--thr", help="Threshold as a fraction of head size."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """MPII PCKh (head-normalised PCK) with the per-joint-group table and AUC."""
    from posekit.data.mpii import read_mpii, read_mpii_predictions
    from posekit.metrics.pck import pckh

    if not 0 < thr <= 10:
        raise PosekitError(f"--thr must be in (0, 10], got {thr}")
    gt_instances = read_mpii(gt, headboxes=headboxes)
    keypoints = read_mpii_predictions(pred, gt_instances)
    result = pckh(keypoints, gt_instances.keypoints, gt_instances.visibility > 0,
                  gt_instances.head_boxes, skeleton=gt_instances.skeleton, thr=thr)
    _emit(_finite(result), as_json, f"MPII PCKh@{thr}: {pred}")


@eval_app.command("posetrack")
def eval_posetrack(gt: Path = typer.Option(..., "--gt", help="Folder of per-sequence GT JSON files."),
                   pred: Path = typer.Option(..., "--pred", help="Folder of per-sequence prediction JSON."),
                   as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """PoseTrack mAP and MOTA/MOTP/precision/recall (poseval conventions)."""
    from posekit.data.posetrack import read_posetrack_dir
    from posekit.metrics.posetrack import evaluate_posetrack

    gt_seqs, pred_seqs = read_posetrack_dir(gt), read_posetrack_dir(pred)
    missing = sorted(set(gt_seqs) - set(pred_seqs))
    if missing:
        raise PosekitError(f"{pred}: no predictions for sequence(s) {', '.join(missing[:5])}")
    result = evaluate_posetrack([(gt_seqs[s], pred_seqs[s]) for s in sorted(gt_seqs)])
    _emit(_finite(result), as_json, f"PoseTrack: {pred}")


@eval_app.command("pose3d")
def eval_pose3d(gt: Path = typer.Option(..., "--gt", help="NPZ with keypoints_3d (N, J, 3)."),
                pred: Path = typer.Option(..., "--pred", help="NPZ with keypoints_3d (N, J, 3)."),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """MPJPE, P-MPJPE, N-MPJPE and MPJVE of root-relative 3D poses, in the input's units."""
    from posekit.io.arrays import read_npz_array
    from posekit.metrics.pose3d import evaluate_pose3d

    g = read_npz_array(gt, "keypoints_3d", ndim=3, last_dim=3)
    p = read_npz_array(pred, "keypoints_3d", ndim=3, last_dim=3)
    if g.shape != p.shape:
        raise PosekitError(f"{pred}: keypoints_3d has shape {p.shape}, but {gt} has {g.shape}")
    if len(g) == 0:
        raise PosekitError(f"{gt}: keypoints_3d has no frames")
    result = evaluate_pose3d(p, g)
    _emit({k: float(v) for k, v in result.items()}, as_json, f"3D pose errors: {pred}")


def _tiles(text: str):
    if text in ("auto", "none"):
        return text
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise PosekitError(f"--tiles must be auto, none or comma-separated fractions, got {text!r}") from None


def _progress(desc: str, total: int):
    """A tqdm bar on stderr (shown on a terminal, for more than one item)."""
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, total=total, unit="image", file=sys.stderr,
                              disable=None if total > 1 else True, leave=False)


def _quiet_native_stderr(command):
    """Run ``command`` with file descriptor 2 sent to /dev/null and Python's ``sys.stderr`` kept on the
    real stream: libraries written in C (libpng inside OpenCV, LiteRT) print notices straight to
    descriptor 2, and posekit reports every failure itself, in one line. Nothing changes when
    ``sys.stderr`` is not descriptor 2 (a test capturing it, for example)."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            real = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            real = False
        if not real:
            return command(*args, **kwargs)
        sys.stderr.flush()
        python_stderr, saved = sys.stderr, os.dup(2)
        sys.stderr = os.fdopen(saved, "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        try:
            return command(*args, **kwargs)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            sys.stderr.close()
            sys.stderr = python_stderr

    return run


def _heatmap_options(checkpoint, input_size, no_flip: bool, dark: bool) -> dict:
    """PoseEstimator options of a heatmap model; refused without --checkpoint (BlazePose has none)."""
    if checkpoint is None and (input_size is not None or no_flip or dark):
        raise PosekitError("--input, --no-flip and --dark go with --checkpoint (a heatmap model)")
    return {} if checkpoint is None else dict(input_size=input_size, flip_test=not no_flip, dark=dark)


@app.command("infer")
@_quiet_native_stderr
def infer(images: Optional[list[Path]] = typer.Argument(None, help="Image files and/or folders of images."),
          out: Path = typer.Option(..., "--out", help="Folder for <stem>.json and <stem>.png; with --coco-ann, "
                                                      "the COCO results file to write."),
          coco_ann: Optional[Path] = typer.Option(None, "--coco-ann",
                                                  help="COCO keypoint annotations: predict every image they list."),
          img_dir: Optional[Path] = typer.Option(None, "--img-dir", help="Folder of the --coco-ann images."),
          boxes: str = typer.Option("detect", "--boxes", help="With --coco-ann: detect (posekit's detector), gt "
                                                              "(annotated boxes) or a COCO detection results file "
                                                              "(no category_id: a person; other categories skipped)."),
          box_thr: float = typer.Option(0.3, "--box-thr", help="Lowest score of a box from a detection file."),
          skeleton: Optional[str] = typer.Option(None, "--skeleton", help="Output keypoints: coco17, h36m17, "
                                                 "blazepose33 or a skeleton YAML (default: coco17 with BlazePose, "
                                                 "the model's own set with --checkpoint)."),
          tiles: str = typer.Option("auto", "--tiles", help="Detector tiling: auto, none or fractions like 0.5,0.7."),
          min_score: Optional[float] = typer.Option(None, "--min-score", help="Lowest person score kept (default "
                                                    "0.5 with BlazePose, 0.2 with --checkpoint)."),
          kpt_thr: float = typer.Option(0.3, "--kpt-thr", help="Lowest keypoint score drawn."),
          no_overlay: bool = typer.Option(False, "--no-overlay", help="Write the JSON only."),
          report: bool = typer.Option(False, "--report", help="Also write DIR/report.html."),
          threads: int = typer.Option(2, "--threads", help="CPU threads per model."),
          model: Optional[str] = typer.Option(None, "--model", help="Keypoint model: blazepose (bundled, the "
                                              "default), or with --checkpoint hrnet, ditn or a full name such as "
                                              "hrnet-w32 (default: the one the checkpoint names)."),
          checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Trained HRNet/DITN weights: "
                                                    ".pth/.pt/.safetensors (PyTorch) or .onnx (ONNX Runtime)."),
          input_size: Optional[str] = typer.Option(None, "--input", help="Crop HEIGHTxWIDTH of the heatmap model "
                                                   "(default: the checkpoint's, else 256x192 COCO, 256x256 MPII)."),
          no_flip: bool = typer.Option(False, "--no-flip", help="Heatmap models: no flip test (about 2x faster)."),
          dark: bool = typer.Option(False, "--dark", help="Heatmap models: decode with DARK.")):
    """Keypoints of every person in images: DIR/<stem>.json and an overlay DIR/<stem>.png per image.

    Exit status: 0 all done; 1 some images unreadable (one line each, the others written); 2 usage error.
    """
    import time

    import cv2

    from posekit.pipeline import PoseEstimator

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # failures are reported below
    if not 0 <= box_thr <= 1 or not 0 <= kpt_thr <= 1:
        raise PosekitError("--box-thr and --kpt-thr must be in [0, 1]")
    estimator_options = dict(model=model, checkpoint=checkpoint, tiles=_tiles(tiles), min_person_score=min_score,
                             num_threads=threads, **_heatmap_options(checkpoint, input_size, no_flip, dark))
    failures: list[str] = []

    def skip(path, error):
        from tqdm import tqdm

        failures.append(str(error))
        tqdm.write(f"posekit: error: {error}", file=sys.stderr)

    start = time.perf_counter()
    if coco_ann is not None:
        from posekit.data.coco import read_coco_keypoints, write_coco_results
        from posekit.pipeline import predict_coco

        if images:
            raise PosekitError("give either images or --coco-ann, not both")
        if img_dir is None:
            raise PosekitError("--coco-ann needs --img-dir, the folder of its images")
        if not img_dir.is_dir():
            raise PosekitError(f"{img_dir}: no such folder")
        gt = read_coco_keypoints(coco_ann)
        estimator = PoseEstimator(skeleton=gt.skeleton, detector="blazepose" if boxes == "detect" else None,
                                  **estimator_options)
        predictions = predict_coco(estimator, gt, img_dir, boxes if boxes in ("detect", "gt") else Path(boxes),
                                   box_threshold=box_thr, on_error=skip,
                                   progress=_progress("posekit infer", len(gt.images)))
        write_coco_results(predictions, out)
        done = len(gt.images) - len(failures)
        typer.echo(f"posekit infer: {done} of {len(gt.images)} images, {len(predictions)} persons "
                   f"(boxes: {boxes}) -> {out}; score with: posekit eval coco --gt {coco_ann} --pred {out}")
    else:
        from posekit.io.images import collect_images
        from posekit.pipeline import infer_images

        if img_dir is not None or boxes != "detect":
            raise PosekitError("--img-dir and --boxes go with --coco-ann")
        paths = collect_images(images or [])
        estimator = PoseEstimator(skeleton=skeleton, **estimator_options)
        items = infer_images(estimator, paths, out, overlays=not no_overlay, kpt_thr=kpt_thr,
                             on_error=skip, progress=_progress("posekit infer", len(paths)))
        if report:
            from posekit.viz import write_html_report

            write_html_report(out / "report.html", items, failures=failures, kpt_thr=kpt_thr)
        persons = sum(len(item.result.persons) for item in items)
        seconds = (time.perf_counter() - start) / max(len(paths), 1)
        typer.echo(f"posekit infer: {len(items)} image{'s' * (len(items) != 1)}, {persons} "
                   f"person{'s' * (persons != 1)}" + (f", {len(failures)} failed" if failures else "")
                   + f" -> {out} ({seconds:.2f} s per image)")
    if failures:
        raise typer.Exit(code=1)


@app.command("demo")
@_quiet_native_stderr
def demo(out: Path = typer.Option(Path("posekit-demo"), "--out", help="Folder for the demo's files.")):
    """Run posekit on the bundled sample photos: overlays, JSON, an HTML page and a COCO score."""
    from posekit.demo import run_demo

    run_demo(out)


@app.command("video")
@_quiet_native_stderr
def video(input: Path = typer.Argument(..., help="A video file (any format OpenCV reads) or a folder of frames."),
          out: Path = typer.Option(..., "--out", help="Folder for <name>.json, <name>.csv and <name>.mp4."),
          no_smooth: bool = typer.Option(False, "--no-smooth", help="Write the raw keypoints (no One-Euro filter)."),
          every: Optional[int] = typer.Option(None, "--every", help="Run the person detector every N frames and "
                                              "track in between (default 10)."),
          fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate of a folder of frames (default 30)."),
          model: Optional[str] = typer.Option(None, "--model", help="Keypoint model: blazepose (bundled, the "
                                              "default), or with --checkpoint hrnet, ditn or a full name."),
          checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Trained HRNet/DITN weights "
                                                    "(.pth/.pt/.safetensors or .onnx)."),
          input_size: Optional[str] = typer.Option(None, "--input", help="Crop HEIGHTxWIDTH of the heatmap model."),
          no_flip: bool = typer.Option(False, "--no-flip", help="Heatmap models: no flip test (about 2x faster)."),
          lift3d: bool = typer.Option(False, "--3d", help="Also lift every track to 3D: <name>_3d.npz/.json/.csv/"
                                      ".mp4/.html and <name>_track<id>.bvh."),
          no_correction: bool = typer.Option(False, "--no-correction", help="With --3d: skip the test-time "
                                             "self-supervised correction.")):
    """Poses of every person in a video, with track ids: JSON, CSV and an overlay video (and 3D with --3d)."""
    from posekit.video import DEFAULT_DETECT_EVERY, lift_video, process_video

    if no_correction and not lift3d:
        raise PosekitError("--no-correction goes with --3d")
    from posekit.pipeline import PoseEstimator

    estimator = PoseEstimator(model=model, checkpoint=checkpoint,
                              **_heatmap_options(checkpoint, input_size, no_flip, dark=False))
    summary = process_video(input, out, estimator, smooth=not no_smooth,
                            detect_every=DEFAULT_DETECT_EVERY if every is None else every, fps=fps)
    typer.echo(summary.line())
    if lift3d:
        typer.echo(lift_video(summary.json_path, correct=not no_correction).line())


@app.command("train")
def train_command(config: Path = typer.Argument(..., help="Experiment config (YAML), e.g. configs/ditn/*.yaml."),
                  resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
                  out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
                  overrides: Optional[list[str]] = typer.Option(None, "--set", help="Override a config value, "
                                                                "e.g. --set train.optimizer.lr=1e-4 (repeatable).")):
    """Train the method a config describes; several processes with torchrun -m posekit.cli train ..."""
    import os

    from posekit.engine.config import load_config
    from posekit.engine.trainer import train

    summary = train(load_config(config, overrides or ()), out or Path("runs") / config.stem, resume=resume,
                    source=str(config))
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        line = f"trained {summary['epoch']} epochs ({summary['step']} steps)"
        if best["value"] is not None:
            line += f"; best {best['metric']} {best['value']:.4f} at epoch {best['epoch']}"
        typer.echo(line)


@app.command("test")
def test_command(config: Path = typer.Argument(..., help="Experiment config (YAML) the weights were trained with."),
                 checkpoint: Path = typer.Option(..., "--checkpoint", help="best.safetensors, last.pt or a "
                                                 "weights-only .pt/.safetensors file."),
                 out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json and result files "
                                                    "(default: <checkpoint folder>/test)."),
                 overrides: Optional[list[str]] = typer.Option(None, "--set", help="Override a config value "
                                                               "(repeatable)."),
                 as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Evaluate trained weights on the config's evaluation set (flip test, COCO AP or MPII PCKh)."""
    import os

    from posekit.engine.config import load_config
    from posekit.engine.trainer import evaluate_weights

    metrics = evaluate_weights(load_config(config, overrides or ()), checkpoint,
                               out or checkpoint.parent / "test", source=str(config))
    if int(os.environ.get("RANK", "0")) == 0:
        _emit(_finite(metrics), as_json, f"{config.stem}: {checkpoint}")


export_app = typer.Typer(no_args_is_help=True, help="Export trained models for deployment.")
app.add_typer(export_app, name="export")


def _model_for_checkpoint(name, checkpoint, skeleton):
    """Model config from the options, else from the checkpoint's training config; plus its weights.
    ``model-info`` reports how weights fit a model; running them (infer, video, export) goes
    through :func:`posekit.models.heatmap_backend.load_torch_model`, which refuses any misfit."""
    from posekit.models.registry import checkpoint_model_spec, read_state_dict

    state, extra = ({}, {}) if checkpoint is None else read_state_dict(checkpoint)
    spec = checkpoint_model_spec(extra)
    if name is not None and name != spec.get("name"):
        spec = {k: v for k, v in spec.items() if k in ("skeleton", "input")}
        spec["name"] = name
    spec.setdefault("name", "hrnet-w32")
    if skeleton is not None:
        spec["skeleton"] = skeleton
    return spec, state


@app.command("model-info")
def model_info(name: str = typer.Argument(..., help="hrnet-w32, hrnet-w48, hrnet-w18-small, ditn-w32, ..."),
               checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights to check against "
                                                         "the model (.pth/.pt/.safetensors)."),
               input_size: Optional[str] = typer.Option(None, "--input", help="Crop HEIGHTxWIDTH (default: "
                                                        "the paper's size for the keypoint set)."),
               skeleton: Optional[str] = typer.Option(None, "--skeleton", help="Keypoint set (default coco17 "
                                                      "or the checkpoint's)."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Parameters, GFLOPs (multiply-adds / 2^30, as the pose papers count) and checkpoint fit."""
    from posekit.models.flops import count_params, gflops
    from posekit.models.registry import build_model, default_input_size, load_weights, parse_size

    spec, state = _model_for_checkpoint(name, checkpoint, skeleton)
    recorded_input = spec.pop("input", None)
    model = build_model(spec)
    size = parse_size(input_size) if input_size else recorded_input or default_input_size(
        model.posekit_config["skeleton"])
    result = {"params": count_params(model), "gflops": round(gflops(model, size), 4), "input": list(size),
              "missing_keys": [], "unexpected_keys": []}
    if checkpoint is not None:
        result.update(load_weights(model, state, str(checkpoint)))
    if not as_json:
        for key in ("missing_keys", "unexpected_keys"):
            keys = result[key]
            result[key] = f"{len(keys)}" + (f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else "")
    _emit(result, as_json, f"Model {name}")


@export_app.command("onnx")
def export_onnx_command(checkpoint: Path = typer.Option(..., "--checkpoint", help="Trained weights "
                                                        "(.pth/.pt/.safetensors)."),
                        out: Path = typer.Option(..., "--out", help="ONNX file to write."),
                        name: Optional[str] = typer.Option(None, "--model", help="Model name or family (default: "
                                                           "the checkpoint's training config; needed for a "
                                                           "plain state dict)."),
                        input_size: Optional[str] = typer.Option(None, "--input", help="Crop HEIGHTxWIDTH "
                                                                 "(default: the checkpoint's or the paper's)."),
                        skeleton: Optional[str] = typer.Option(None, "--skeleton", help="Keypoint set (default: "
                                                               "the checkpoint's, else read off the weights)."),
                        opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
                        as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Write an ONNX model (dynamic batch) and check it against PyTorch with ONNX Runtime."""
    from posekit.export.onnx import export_onnx
    from posekit.models.heatmap_backend import load_torch_model, training_sigma
    from posekit.models.registry import default_input_size, parse_size

    model, _, recorded_input, extra = load_torch_model(checkpoint, name, skeleton)
    size = parse_size(input_size) if input_size else recorded_input or default_input_size(
        model.posekit_config["skeleton"])
    sigma = training_sigma(extra.get("config"))   # DARK decoding of the ONNX file blurs with it
    _emit(export_onnx(model, out, size, opset=opset, metadata={"sigma": sigma}), as_json, f"ONNX export: {out}")


from posekit.data.synthetic.cli import synth_app  # noqa: E402  (commands import their modules lazily)

app.add_typer(synth_app, name="synth")

from posekit.nrsfm.cli import nrsfm_app  # noqa: E402  (commands import their modules lazily)

app.add_typer(nrsfm_app, name="nrsfm")


@app.command("lift")
def lift_command(input: Path = typer.Option(..., "--input", help="2D keypoints .npz: keypoints (T, 17, 2) pixels "
                                            "in h36m17 order, optional scores (T, 17), image_size (width, height); "
                                            "or a video's .json from posekit video (every track is lifted)."),
                 output: Path = typer.Option(..., "--output", help="3D poses .npz to write (keypoints_3d (T, 17, 3) "
                                             "mm, root-relative, camera axes; for a video JSON, one row per "
                                             "person per frame with track_id and frame)."),
                 no_correction: bool = typer.Option(False, "--no-correction", help="Skip the test-time "
                                                    "self-supervised correction."),
                 no_flip: bool = typer.Option(False, "--no-flip", help="Skip the test-time flip (lifting the "
                                              "mirrored sequence too and averaging)."),
                 weights: Optional[Path] = typer.Option(None, "--weights", help="Lifter weights (.safetensors; "
                                                        "default: the shipped CPU model).")):
    """Monocular 3D poses from a 2D keypoint sequence or every track of a video (3D Human Pose Machines)."""
    from posekit.lift import lift_sequence, load_lifter
    from posekit.lift.io import read_lift_input, write_lift_output

    if input.suffix.lower() == ".json":
        from posekit.lift.io import write_tracks_output
        from posekit.lift.tracks import MIN_TRACK_FRAMES, lift_tracks, progress_bar, read_video_poses

        poses = read_video_poses(input)
        model, settings = load_lifter(weights)
        with progress_bar("posekit lift") as advance:
            lifted = lift_tracks(poses, model, settings, correct=not no_correction, flip=not no_flip,
                                 progress=advance)
        write_tracks_output(output, lifted)
        corrected = sum(int(t.corrected.sum()) for t in lifted.tracks)
        typer.echo(f"tracks: {len(lifted.tracks)} lifted, {len(lifted.skipped)} skipped (seen in fewer than "
                   f"{MIN_TRACK_FRAMES} frames); {lifted.pose_count} poses over {len(poses.frame_indices)} frames "
                   f"({corrected} corrected) -> {output}")
        return
    data = read_lift_input(input)
    model, settings = load_lifter(weights)
    result = lift_sequence(model, data["keypoints"], data["scores"], data["image_size"],
                           correct=not no_correction, settings=settings, flip=not no_flip)
    write_lift_output(output, result["keypoints_3d"], result["uncorrected"], result["corrected"])
    typer.echo(f"lifted {len(result['keypoints_3d'])} frames ({int(result['corrected'].sum())} corrected) "
               f"-> {output}")

def main(argv: list[str] | None = None):
    try:
        app(args=argv, prog_name="posekit")
    except PosekitError as exc:
        typer.echo(f"posekit: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
