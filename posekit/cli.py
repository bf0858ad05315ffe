"""The ``posekit`` command.

Every user mistake surfaces as one ``posekit: error: ...`` line on stderr and exit status 2.
"""
from __future__ import annotations

import json
import math
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
    from posekit.metrics.posetrack import posetrack_eval

    gt_seqs, pred_seqs = read_posetrack_dir(gt), read_posetrack_dir(pred)
    missing = sorted(set(gt_seqs) - set(pred_seqs))
    if missing:
        raise PosekitError(f"{pred}: no predictions for sequence(s) {', '.join(missing[:5])}")
    result = posetrack_eval([(gt_seqs[s], pred_seqs[s]) for s in sorted(gt_seqs)])
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


@app.command("demo")
def demo(out: Path = typer.Option(Path("posekit-demo"), "--out", help="Folder for the demo's files.")):
    """Evaluate noisy predictions on the bundled COCO sample (shows the evaluation path)."""
    from posekit.demo import run_demo

    run_demo(out)


def main(argv: list[str] | None = None):
    try:
        app(args=argv, prog_name="posekit")
    except PosekitError as exc:
        typer.echo(f"posekit: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
