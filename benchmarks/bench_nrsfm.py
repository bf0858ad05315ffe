"""NRSfM speed: milliseconds per frame of CRA, CRA-EN, CRA-SC and MCM-RR (goals: CRA <= 20 ms,
MCM-RR <= 50 ms per frame on a laptop-class CPU).

Bases (K = 128) are learned from the shared CMU motion capture with the walk trial 07_05 left out,
then 07_05 (30 Hz, h36m17 joints) is projected under random rotations and reconstructed; learning
is not timed. Without the shared folder, a generated 17-joint sequence stands in. Frames are solved
together (as the library does for a sequence); the time per frame is the wall time divided by the
number of frames, best of --repeats. The machine's load average is printed beside the times,
because other jobs share the CPU.

The solvers run BLAS with one thread (threadpoolctl; posekit/nrsfm/cra.py explains why).

--dev-study instead prints the development study behind defaults.yaml (docs/nrsfm.md): on the
walk 07_05 fold only, the normalised error and xi of each method over a small grid of the values the
article leaves open (dictionary lambda and tau, alpha, beta and gamma, refinement mode).

    .venv/bin/python benchmarks/bench_nrsfm.py [--mocap ../shared/data/mocap] [--frames 130]
                                               [--repeats 3] [--dev-study]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from posekit.nrsfm.benchmark import (benchmark_protocol, discover, learn_fold_bases, load_sequence,
                                     make_folds, project_sequence)
from posekit.nrsfm.mcm_rr import BASES_FOR_METHOD, METHODS, reconstruct


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mocap", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared/data/mocap")
    parser.add_argument("--frames", type=int, default=130)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dev-study", action="store_true")
    return parser.parse_args()


def training_and_test(mocap: Path, frames: int):
    """(training shapes, test shapes, source description)."""
    if not mocap.is_dir():
        rng = np.random.default_rng(0)
        prototypes = rng.normal(size=(6, 17, 3)) * 300
        weights = rng.dirichlet(np.full(6, 0.5), size=1200 + frames)
        shapes = np.einsum("fk,kpj->fpj", weights, prototypes)
        return shapes[:1200], shapes[1200:], "generated 17-joint shapes (no shared mocap folder)"
    specs, joint_set = discover(mocap)
    sequences = [load_sequence(s, joint_set) for s in specs if s.path.suffix != ".mat"]
    fold = next(f for f in make_folds(sequences, benchmark_protocol()) if f.test.spec.name == "07_05")
    return fold.train_points, fold.test_points[:frames], f"CMU 07_05 (walk), {joint_set}"


def dev_study(train, keypoints, truth):
    """Errors on the development fold over a grid of the open hyper-parameters."""
    from posekit.metrics.nrsfm import normalized_shape_error, shape_error_xi
    from posekit.nrsfm.bases import learn_elastic_net_bases, learn_sparse_coding_bases

    def score(method, bases, **params):
        rec = reconstruct(keypoints, bases, method, **params)
        xi = shape_error_xi(rec.shapes, truth, align="orthogonal")["xi"] / 100
        norm = normalized_shape_error(rec.shapes, truth)["mean"]
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"  {method:<7} {shown:<40} norm {norm:.4f}   xi {xi:8.1f} cm^2", flush=True)

    dictionaries = {}
    for lam in (0.05, 0.2, 0.5):
        dictionaries[("sparse-coding", lam, 1.0)] = learn_sparse_coding_bases(train, 128, lam=lam)
        dictionaries[("elastic-net", lam, 0.5)] = learn_elastic_net_bases(train, 128, lam=lam, tau=0.5)
    for tau in (0.2, 0.8):
        dictionaries[("elastic-net", 0.2, tau)] = learn_elastic_net_bases(train, 128, lam=0.2, tau=tau)
    print("dictionary lambda, tau and alpha (no similarity term):")
    for (coding, lam, tau), bases in dictionaries.items():
        print(f" {coding} bases, lambda={lam}, tau={tau}")
        for alpha in (0.0005, 0.002, 0.01):
            score("cra" if coding == "sparse-coding" else "cra-en", bases, alpha=alpha)
    sc, en = dictionaries[("sparse-coding", 0.2, 1.0)], dictionaries[("elastic-net", 0.2, 0.5)]
    print("similarity term (lambda=0.2, tau=0.5, alpha=0.002):")
    for beta in (0.0003, 0.003):
        for gamma in (0.2, 0.5):
            score("cra-sc", sc, beta=beta, gamma=gamma)
            score("mcm-rr", en, beta=beta, gamma=gamma)
    print("refinement (defaults otherwise):")
    for refine in ("fit", "sync", "none"):
        score("cra", sc, refine=refine)
        score("mcm-rr", en, refine=refine)


def main():
    args = parse_args()
    train, test, source = training_and_test(args.mocap, args.frames)
    if args.dev_study:
        keypoints, camera, _ = project_sequence(test, np.random.default_rng(0))
        print(f"development fold: {source}; {len(train)} training / {len(test)} test frames")
        dev_study(train, keypoints, camera - camera.mean(axis=1, keepdims=True))
        return 0
    protocol = {"bases_iterations": None}
    bases = {coding: learn_fold_bases(train, coding, protocol, 0)
             for coding in set(BASES_FOR_METHOD.values())}
    keypoints, _, _ = project_sequence(test, np.random.default_rng(0))
    print(f"source: {source}; {len(keypoints)} frames, {keypoints.shape[1]} points, "
          f"K = {bases['sparse-coding'].num_bases} bases")

    goals = {"cra": 20.0, "mcm-rr": 50.0}
    for method in METHODS:
        best, rec = float("inf"), None
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            rec = reconstruct(keypoints, bases[BASES_FOR_METHOD[method]], method)
            best = min(best, time.perf_counter() - start)
        ms = 1000 * best / len(keypoints)
        goal = f"   goal <= {goals[method]:.0f} ms: {'met' if ms <= goals[method] else 'NOT met'}" \
            if method in goals else ""
        print(f"{method:<7} {ms:7.2f} ms/frame   ALM iterations {rec.iterations.mean():6.1f}   "
              f"load average {load:5.2f} on {os.cpu_count()} CPUs{goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
