"""``posekit nrsfm``: learn shape bases, reconstruct 3D shapes from 2D keypoints, run the replication.

Files are ``.npz``: training shapes ``keypoints_3d`` (T, J, 3); 2D input ``keypoints`` (T, J, 2) with
NaN for missing points and an optional ``visibility`` (T, J); the output holds ``keypoints_3d``
(T, J, 3) in the camera frame (x, y on the input, z relative), ``rotations``, ``coefficients``,
``iterations`` and ``converged``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from posekit.errors import PosekitError

nrsfm_app = typer.Typer(no_args_is_help=True, help="Non-rigid structure from motion: 3D shapes from "
                        "2D keypoints with learned shape bases (MCM-RR, CRA).")

_FIT_METHODS = {"mcm-rr": "elastic-net", "cra": "sparse-coding"}


def _emit(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, allow_nan=False))
        return
    typer.echo(title)
    width = max(len(k) for k in result)
    for key, value in result.items():
        typer.echo(f"  {key:<{width}}  {value:.4f}" if isinstance(value, float) else
                   f"  {key:<{width}}  {value}")


def _training_shapes(paths: list[Path]) -> tuple[np.ndarray, tuple | None]:
    from posekit.io.arrays import read_npz_array

    arrays, names = [], None
    for path in paths:
        points = read_npz_array(path, "keypoints_3d", ndim=3, last_dim=3)
        if len(points) == 0:
            raise PosekitError(f"{path}: keypoints_3d has no frames")
        if arrays and points.shape[1] != arrays[0].shape[1]:
            raise PosekitError(f"{path}: keypoints_3d has {points.shape[1]} joints but {paths[0]} "
                               f"has {arrays[0].shape[1]}")
        arrays.append(points)
        with np.load(path, allow_pickle=False) as archive:
            if "joint_names" in archive.files and names is None:
                names = tuple(str(n) for n in archive["joint_names"].tolist())
    return np.concatenate(arrays), names


def fit_bases_files(train: list[Path], out: Path, method: str = "mcm-rr", k: int | None = None) -> dict:
    """Learn bases from ``keypoints_3d`` files and save them; returns a summary."""
    from posekit.nrsfm.bases import learn_bases
    from posekit.nrsfm.mcm_rr import default_bases_parameters

    if method not in _FIT_METHODS:
        raise PosekitError(f"--method must be one of {', '.join(_FIT_METHODS)}, got {method!r}")
    if not train:
        raise PosekitError("--train: give at least one .npz file with keypoints_3d")
    shapes, names = _training_shapes(train)
    coding = _FIT_METHODS[method]
    params = default_bases_parameters(coding)
    default_k = params.pop("k")
    count = k if k is not None else min(default_k, len(shapes))
    options = {"lam": params["lam"], "tau": params.get("tau", 1.0),
               "nonnegative": coding == "elastic-net", "n_iter": params["n_iter"],
               "tol": params["tol"], "seed": params["seed"]}
    start = time.perf_counter()
    bases = learn_bases(shapes, count, **options)
    if names is not None and len(names) == bases.num_points:
        bases.joint_names = names
    bases.save(out)
    return {"bases": str(out), "coding": bases.coding, "k": bases.num_bases,
            "joints": bases.num_points, "training_frames": len(shapes),
            "iterations": bases.params["iterations"], "seconds": time.perf_counter() - start}


def reconstruct_files(bases_path: Path, input_path: Path, output_path: Path,
                      method: str = "mcm-rr") -> dict:
    """Reconstruct a 2D sequence file with saved bases and write the 3D result; returns a summary."""
    from posekit.io.arrays import read_npz_array
    from posekit.nrsfm.bases import ShapeBases
    from posekit.nrsfm.mcm_rr import reconstruct

    bases = ShapeBases.load(bases_path)
    keypoints = read_npz_array(input_path, "keypoints", ndim=3, last_dim=2, allow_nan=True)
    if keypoints.shape[1] != bases.num_points:
        raise PosekitError(f"{input_path}: keypoints have {keypoints.shape[1]} joints but the bases "
                           f"{bases_path} have {bases.num_points}")
    with np.load(input_path, allow_pickle=False) as archive:
        has_visibility = "visibility" in archive.files
    visibility = read_npz_array(input_path, "visibility", ndim=2) if has_visibility else None
    start = time.perf_counter()
    try:
        rec = reconstruct(keypoints, bases, method, visibility=visibility)
    except PosekitError as exc:
        raise PosekitError(f"{input_path}: {exc}") from None
    seconds = time.perf_counter() - start
    arrays = {"keypoints_3d": rec.shapes, "coefficients": rec.coefficients,
              "iterations": rec.iterations, "converged": rec.converged, "method": np.array(method)}
    if rec.rotations is not None:
        arrays["rotations"] = rec.rotations
    if bases.joint_names is not None:
        arrays["joint_names"] = np.array(bases.joint_names)
    np.savez_compressed(output_path, **arrays)
    return {"output": str(output_path), "method": method, "frames": len(rec.shapes),
            "converged": float(rec.converged.mean()),
            "ms_per_frame": 1000 * seconds / len(rec.shapes)}


@nrsfm_app.command("fit-bases")
def fit_bases(train: list[Path] = typer.Option(..., "--train", help="Training .npz files with "
                                               "keypoints_3d (T, J, 3) (several after one --train)."),
              more: Optional[list[Path]] = typer.Argument(None, hidden=True),
              out: Path = typer.Option(..., "--out", help="Bases file to write (.npz)."),
              method: str = typer.Option("mcm-rr", "--method", help="mcm-rr: elastic-net bases; "
                                         "cra: sparse-coding bases."),
              k: Optional[int] = typer.Option(None, "--k", help="Number of bases (default 128, at "
                                              "most the number of training frames)."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Learn shape bases from 3D training sequences."""
    _emit(fit_bases_files(list(train) + list(more or []), out, method, k), as_json,
          f"NRSfM bases: {out}")


@nrsfm_app.command("reconstruct")
def reconstruct_cmd(bases: Path = typer.Option(..., "--bases", help="Bases file from fit-bases."),
                    input_path: Path = typer.Option(..., "--input", help=".npz with keypoints (T, J, 2); "
                                                    "NaN or visibility 0 marks a missing point."),
                    output: Path = typer.Option(..., "--output", help=".npz to write keypoints_3d to."),
                    method: str = typer.Option("mcm-rr", "--method",
                                               help="mcm-rr | cra | cra-en | cra-sc."),
                    as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """3D shapes (camera frame) from a 2D keypoint sequence."""
    _emit(reconstruct_files(bases, input_path, output, method), as_json, f"NRSfM: {output}")


@nrsfm_app.command("benchmark")
def benchmark_cmd(mocap: Path = typer.Option(..., "--mocap", help="Motion-capture folder (the "
                                             "shared layout, nrsfm_categories.yaml, or one "
                                             "sub-folder per category)."),
                  quick: bool = typer.Option(False, "--quick", help="Reduced run (about a minute)."),
                  manifest: Optional[list[Path]] = typer.Option(None, "--manifest", help="Extra "
                                                                "YAML manifest of categories."),
                  plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for figures."),
                  as_json: bool = typer.Option(False, "--json", help="Print one JSON object "
                                               "{category: {method: {xi, xi_std, normalized}}}.")):
    """CRA, CRA-EN, CRA-SC and MCM-RR per category, beside the article's Tables 1 and 3."""
    from posekit.nrsfm.benchmark import format_report, run_benchmark, write_plots

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    summary, results, protocol = run_benchmark(mocap, quick=quick, manifests=manifest or (),
                                               progress=None if as_json else progress)
    if plots is not None:
        write_plots(results, plots)
    if as_json:
        typer.echo(json.dumps(summary, allow_nan=False))
    else:
        typer.echo(format_report(summary, results, protocol))


__all__ = ["nrsfm_app", "fit_bases_files", "reconstruct_files"]
