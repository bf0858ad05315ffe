"""Synthetic engine speed: labelled 256x256 images with one person, written as a dataset.

Times ``write_image_dataset`` (render, labels, JPEG + mask PNG encoding and writing, COCO JSON and the
labels archive) on --n images, best of --repeats, and prints images per second of wall-clock time and,
with one worker, of this process's CPU time (what the engine reaches alone on one core). Other jobs may share
the CPU: the load average (1, 5, 15 minutes) is printed next to the numbers. Loading the motion capture
is timed separately (once per run of the command line).

    .venv/bin/python benchmarks/bench_synth.py [--n 200] [--repeats 3] [--size 256] [--persons 1]
                                               [--workers 1] [--mocap ../shared/data/mocap]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from posekit.data.synthetic.datasets import ImageConfig, write_image_dataset
from posekit.data.synthetic.motion import load_mocap_library
from posekit.data.synthetic.scenes import PoseSource

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--persons", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    parser.add_argument("--mocap", type=Path, default=REPO.parent / "shared" / "data" / "mocap")
    args = parser.parse_args()

    start = time.perf_counter()
    motions = load_mocap_library(args.mocap) if args.mocap.is_dir() else []
    print(f"motion capture: {len(motions)} trials loaded in {time.perf_counter() - start:.2f} s"
          f"{'' if motions else ' (none found: posture templates only)'}")
    source = PoseSource(motions)
    config = ImageConfig(width=args.size, height=args.size, persons=(args.persons, args.persons))
    write_image_dataset(Path(tempfile.mkdtemp()), 5, 0, config, source)      # warm caches

    best_wall = best_cpu = float("inf")
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            wall, cpu = time.perf_counter(), time.process_time()
            write_image_dataset(Path(folder), args.n, repeat, config, source, workers=args.workers)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{args.n} images {args.size}x{args.size}, {args.persons} person(s), {args.workers} worker(s), "
          f"best of {args.repeats}:")
    print(f"  wall clock: {args.n / best_wall:7.1f} images/s  ({1000 * best_wall / args.n:.1f} ms/image)")
    if args.workers == 1:
        print(f"  CPU time:   {args.n / best_cpu:7.1f} images/s  ({1000 * best_cpu / args.n:.1f} ms/image)")
    print(f"  load average (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
