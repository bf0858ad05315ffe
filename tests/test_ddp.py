"""Two CPU processes under torchrun (gloo): identical replicas, and the same result as one process."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posekit.engine.checkpoint import load_weights
from posekit.engine.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import tiny_config  # noqa: E402  (registers the tiny task)

REPO = Path(__file__).resolve().parents[1]

LAUNCHED = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_engine import tiny_config
from posekit.engine.trainer import Trainer
config = tiny_config(epochs=4)
config["model"] = {{"dropout": 0.0}}
config["train"]["optimizer"]["lr"] = 0.05
trainer = Trainer(config, {out!r})
trainer.fit()
torch.save(trainer.module.state_dict(), {out!r} + f"/rank{{trainer.processes.rank}}.pt")
trainer.close()
"""


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHED.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    for key in rank0:  # gradients are averaged, so the replicas never drift apart
        assert torch.equal(rank0[key], rank1[key]), key
    saved, _ = load_weights(out / "last.pt")
    for key in rank0:
        assert torch.equal(saved[key], rank0[key]), key

    # One process with the same total batch sees the same samples at every step: the same weights
    # up to the order of floating-point sums.
    config = tiny_config(epochs=4)
    config["model"] = {"dropout": 0.0}
    config["train"]["optimizer"]["lr"] = 0.05
    single = train(config, tmp_path / "single")
    alone, _ = load_weights(tmp_path / "single" / "last.pt")
    for key in rank0:
        assert torch.allclose(rank0[key], alone[key], atol=1e-5, rtol=1e-5), key

    with open(out / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32  # 4 epochs x 32 samples / batch 4, logged by process 0 only
    first_epoch = sum(float(r["loss"]) for r in rows[:8]) / 8
    last_epoch = sum(float(r["loss"]) for r in rows[-8:]) / 8
    assert last_epoch < 0.2 * first_epoch
    with open(out / "eval_log.csv", newline="") as handle:
        evals = list(csv.DictReader(handle))
    assert float(evals[-1]["mse"]) == pytest.approx(single["metrics"]["mse"], rel=1e-4)
