"""CPU latency of the 2D heatmap models: milliseconds per 256x192 crop, eager PyTorch and ONNX Runtime.

    python benchmarks/bench_2d_models.py [--models hrnet-w32 ditn-w32] [--batches 1 8] [--repeats 5]

Prints the load average first: on a shared machine other jobs steal cores, so every figure is the
minimum over ``--repeats`` timed runs (after one warm-up), the least disturbed one, and the models
take turns within each repeat so that their ratio is fair. The last lines
give each DITN's cost relative to the HRNet of the same width for each backend and batch (the goal:
within 1.1x) and whether ONNX Runtime stays under 80 ms per crop.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posekit.export.onnx import export_onnx  # noqa: E402
from posekit.models.flops import count_params, gflops  # noqa: E402
from posekit.models.onnx_backend import OnnxPoseModel  # noqa: E402
from posekit.models.registry import build_model  # noqa: E402


def best_ms_per_crop(runners: dict, images: np.ndarray, repeats: int) -> dict:
    """Min over repeats of each runner's time per crop; the runners take turns within every repeat
    so that a burst of load from other jobs hits all of them alike (fair ratios)."""
    for run in runners.values():
        run(images)  # warm-up: allocations, kernel selection
    best = {name: float("inf") for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(images)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1000 * t / len(images) for name, t in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hrnet-w32", "ditn-w32"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="256x192", help="crop HEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores; "
          f"{args.threads} threads; torch {torch.__version__}")
    rng = np.random.default_rng(0)
    eager, onnx = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = build_model(name).eval()
            print(f"{name}: {count_params(model) / 1e6:.2f} M params, {gflops(model, (h, w)):.2f} GFLOPs")
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, (h, w), verify=False)
            onnx[name] = OnnxPoseModel(path, num_threads=args.threads)

            def run_eager(images, model=model):
                with torch.inference_mode():
                    return model(torch.from_numpy(images))

            eager[name] = run_eager
        results: dict[tuple[str, str, int], float] = {}
        for batch in args.batches:
            images = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
            for backend, runners in (("pytorch", eager), ("onnxruntime", onnx)):
                for name, ms in best_ms_per_crop(runners, images, args.repeats).items():
                    results[(name, backend, batch)] = ms
                    print(f"  {name:<16} {backend:<12} batch {batch:<3} {ms:8.1f} ms/crop")
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.models:
        base = name.replace("ditn-", "hrnet-", 1)
        if name.startswith("ditn-") and base in args.models:
            for backend in ("pytorch", "onnxruntime"):
                for batch in args.batches:
                    ratio = results[(name, backend, batch)] / results[(base, backend, batch)]
                    print(f"{name} / {base}  {backend:<12} batch {batch:<3} {ratio:.3f}x")
    for name in args.models:
        worst = max(results[(name, "onnxruntime", batch)] for batch in args.batches)
        print(f"{name}: slowest ONNX Runtime figure {worst:.1f} ms/crop "
              f"({'within' if worst <= 80 else 'above'} 80 ms)")

if __name__ == "__main__":
    main()
