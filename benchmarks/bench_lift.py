"""3D pose machine lifter: speed of batched lifting and of the test-time correction, and accuracy on
held-out real motion capture.

Speed: frames per second of the transformer + Psi_C over --sequences sequences of --frames frames (no
correction), and milliseconds per frame of the self-supervised correction (two steps) over the same
frames, best of --repeats. Accuracy (``--accuracy``): the lift3d evaluation of the config (held-out CMU
trials, clean 2D and 2D with sigma 5 px + outliers): MPJPE, P-MPJPE, N-MPJPE, MPJVE for the full model
(test-time correction), without test-time correction (``_nossc``), the transformer's own output
(``_transformer``) and frame-by-frame input (``_single``). Other jobs may share the CPU: the load
average is printed with the numbers.

    .venv/bin/python benchmarks/bench_lift.py [--weights W] [--sequences 64] [--frames 256] [--threads 2]
                                              [--accuracy] [--config configs/lift/lifter_cmu_h36m17.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from posekit.lift import load_lifter
from posekit.lift.correction import self_supervised_correction

REPO = Path(__file__).resolve().parents[1]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def accuracy(config: Path, weights: Path | None, overrides: list[str]) -> dict:
    from posekit.engine.checkpoint import load_weights
    from posekit.engine.config import load_config
    from posekit.engine.tasks import build_task
    from posekit.lift import DEFAULT_WEIGHTS

    task = build_task(load_config(config, ["data.val.correction=true", "data.val.single_frame=true", *overrides]),
                      str(config))
    model = task.build_model()
    state, _ = load_weights(weights or DEFAULT_WEIGHTS)
    task.load_weights(model, {k: v.float() for k, v in state.items()}, str(weights))
    model.eval()
    dataset = task.val_dataset()
    records = []
    with torch.no_grad():
        for index in range(len(dataset)):
            records += task.predict(model, task.collate([dataset[index] | {"index": index}]))
    return task.score(records, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="lifter .safetensors (default: shipped)")
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "lift" / "lifter_cmu_h36m17.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, settings = load_lifter(args.weights)
    inputs = torch.randn(args.sequences, args.frames, model.transformer.adapter[0].in_features)
    total = args.sequences * args.frames

    def lift():
        with torch.no_grad():
            p3d, _ = model.transformer(inputs)
            model.projector.correct(p3d.flatten(2))

    with torch.no_grad():
        p3d, _ = model.transformer(inputs[:4])
    p3d = p3d.flatten(0, 1)
    target = inputs[:4, :, :34].flatten(0, 1).reshape(-1, 17, 2)
    lift_s = best_of(args.repeats, lift)
    correct_s = best_of(args.repeats, lambda: self_supervised_correction(model.projector, p3d, target,
                                                                         settings=settings))
    result = {"threads": args.threads, "load_average": [round(x, 2) for x in os.getloadavg()],
              "lift_frames_per_s": round(total / lift_s, 1),
              "correction_ms_per_frame": round(1000 * correct_s / len(p3d), 3),
              "correction_frames": len(p3d), "correction_update": list(settings.update)}
    if args.accuracy:
        result["accuracy_mm"] = {k: round(v, 2) for k, v in accuracy(args.config, args.weights,
                                                                     args.overrides).items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
