"""Images per second of posekit's image pipeline on this CPU, end to end (detection included).

Two real COCO photos: one person (000000000785, 640 x 425) and five persons (000000197388,
640 x 392). Timed: ``PoseEstimator()(image_array)``, i.e. the multi-scale detector (7 detector runs
on a 640-pixel photo), one landmark run per person, and the clean-up; decoding the JPEG is timed
apart. ``tiles="none"`` (one detector run on the whole photo: MediaPipe's work for one person) is
timed too. Each timing is the best of ``--repeats`` runs (other jobs may share the CPU: the best run is
the one least disturbed), printed with the median and the load average (``os.getloadavg``) at
the time.

With ``mediapipe`` importable (see bench_2d_accuracy.py for the venv), MediaPipe's own Pose
solution (static images, model_complexity=1: the same detector and BlazePose Full landmark models,
one detector run on the whole image, at most one person) is timed on the same arrays, and the ratio
printed. Otherwise the comparison is skipped.

With ``--heatmap-models hrnet-w32 ditn-w32`` the same photos also go through those models (random
weights: the time does not depend on them) in PyTorch and in ONNX Runtime: ms per person for the
pose stage alone (the boxes the bundled pipeline found, given), with and without the flip test, and
images/s end to end (detector and flip test included).

    .venv/bin/python benchmarks/bench_2d_speed.py [--repeats 20] [--threads 2] [--heatmap-models ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from posekit.io.images import load_image
from posekit.pipeline import PoseEstimator

IMAGES = Path(__file__).resolve().parents[1] / "posekit" / "assets" / "samples"
ONE_PERSON = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "000000000785.jpg"
FIVE_PERSONS = IMAGES / "000000197388.jpg"


def best_of(function, repeats: int) -> tuple[float, float, tuple]:
    """(best seconds, median seconds, load average after) of ``repeats`` calls after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), os.getloadavg()


def report(name: str, best: float, median: float, load: tuple, extra: str = ""):
    print(f"  {name:<40} {1 / best:6.1f} images/s (best {best * 1000:6.1f} ms, median {median * 1000:6.1f} ms)"
          f"  load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{extra}")


def heatmap_weights(name: str, folder: Path) -> dict[str, Path]:
    """A random-weight posekit checkpoint of ``name`` and its ONNX export: {backend: file}."""
    import torch

    from posekit.engine.checkpoint import save_weights
    from posekit.export.onnx import export_onnx
    from posekit.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(name).eval()
    checkpoint, onnx = folder / f"{name}.safetensors", folder / f"{name}.onnx"
    save_weights(model.state_dict(), checkpoint,
                 metadata={"config": {"model": {"name": name, "options": {}}, "data": {"skeleton": "coco17"}}})
    export_onnx(model, onnx, (256, 192), verify=False)
    return {"pytorch": checkpoint, "onnxruntime": onnx}


def time_heatmap_models(names: list[str], photos: list[tuple[str, Path]], boxes: dict, args) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for backend, weights in heatmap_weights(name, Path(folder)).items():
                print(f"{name}, {backend}:")
                for label, path in photos:
                    image, found = load_image(path), boxes[path]
                    row = []
                    for flip in (False, True):
                        estimator = PoseEstimator(checkpoint=weights, flip_test=flip, num_threads=args.threads)
                        best, _, _ = best_of(lambda: estimator(image, boxes=found), args.repeats)
                        row.append(f"{best * 1000 / len(found):6.1f} ms/person{' (flip test)' if flip else ''}")
                    best, median, load = best_of(lambda: estimator(image), args.repeats)
                    report(f"{label}: end to end, flip test", best, median, load, "  [" + ", ".join(row) + "]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heatmap-models", nargs="*", default=[], help="e.g. hrnet-w32 ditn-w32")
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, threads per model: {args.threads}")
    estimator = PoseEstimator(num_threads=args.threads)
    if args.heatmap_models:
        photos = [("1 person", ONE_PERSON), ("5 persons", FIVE_PERSONS)]
        boxes = {path: [person.box for person in estimator(load_image(path)).persons] for _, path in photos}
        time_heatmap_models(args.heatmap_models, photos, boxes, args)
        return
    whole_image = PoseEstimator(num_threads=args.threads, tiles="none")
    try:
        import mediapipe as mp

        mp_pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    except ImportError:
        mp_pose = None
    for label, path in (("1 person", ONE_PERSON), ("5 persons", FIVE_PERSONS)):
        image = load_image(path)
        print(f"{label}: {path.name} ({image.shape[1]} x {image.shape[0]})")
        report("decode (load_image)", *best_of(lambda: load_image(path), args.repeats))
        runs_before = estimator.detector.invocations
        persons = len(estimator(image))
        detector_runs = estimator.detector.invocations - runs_before
        best, median, load = best_of(lambda: estimator(image), args.repeats)
        report("posekit PoseEstimator", best, median, load,
               f"  [{persons} persons, {detector_runs} detector runs]")
        whole_persons = len(whole_image(image))
        whole_best, whole_median, whole_load = best_of(lambda: whole_image(image), args.repeats)
        report("posekit PoseEstimator(tiles='none')", whole_best, whole_median, whole_load,
               f"  [{whole_persons} persons, 1 detector run]")
        if mp_pose is None:
            print("  MediaPipe: not installed, comparison skipped")
            continue
        mp_best, mp_median, mp_load = best_of(lambda: mp_pose.process(image), args.repeats)
        found = mp_pose.process(image).pose_landmarks is not None
        report("MediaPipe Pose (static, Full)", mp_best, mp_median, mp_load, f"  [{int(found)} person]")
        print(f"  time ratio posekit / MediaPipe: {best / mp_best:.2f} (posekit finds {persons} persons, "
              f"MediaPipe {int(found)}); without tiles: {whole_best / mp_best:.2f}")


if __name__ == "__main__":
    main()
