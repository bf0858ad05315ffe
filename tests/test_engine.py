"""The training engine: configs, checkpoints, exact resume, schedule, on a tiny regression task."""
import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from posekit.engine.checkpoint import (load_checkpoint, load_weights, rng_state, save_checkpoint,
                                       save_weights, set_rng_state)
from posekit.engine.config import Field, apply_overrides, load_config, validate
from posekit.engine.tasks import Task, build_task, register_task
from posekit.engine.trainer import Trainer, evaluate_weights, learning_rate, train
from posekit.errors import PosekitError

REPO = Path(__file__).resolve().parents[1]


# -- a tiny task: noisy linear regression -----------------------------------------------------------
class TinyData:
    """x (4,) -> y = W x + b; training samples jitter x with the rng they are given."""

    def __init__(self, n: int, noise: float, offset: int = 0):
        gen = np.random.default_rng(1234)
        self.w = gen.normal(size=(2, 4))
        self.x = np.random.default_rng(offset).normal(size=(n, 4))
        self.y = self.x @ self.w.T + 0.5
        self.noise = noise

    def __len__(self):
        return len(self.x)

    def sample(self, index, rng):
        x = self.x[index] + rng.normal(scale=self.noise, size=4)
        return {"x": torch.tensor(x, dtype=torch.float32), "y": torch.tensor(self.y[index], dtype=torch.float32)}

    def __getitem__(self, index):
        return {"x": torch.tensor(self.x[index], dtype=torch.float32),
                "y": torch.tensor(self.y[index], dtype=torch.float32)}


INTERRUPT_AT = {"step": None}  # raise KeyboardInterrupt when training reaches this step


class TinyTask(Task):
    schema = {"data": {"n_train": Field("int", 32), "n_val": Field("int", 8),
                       "noise": Field("float", 0.05)},
              "model": {"dropout": Field("float", 0.2)}}
    metric = "mse"
    higher_is_better = False

    def __init__(self, config):
        super().__init__(config)
        self.steps = 0

    def build_model(self):
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(self.config["model"]["dropout"]),
                             nn.Linear(16, 2))

    def train_dataset(self):
        return TinyData(self.config["data"]["n_train"], self.config["data"]["noise"])

    def val_dataset(self):
        return TinyData(self.config["data"]["n_val"], 0.0, offset=99)

    def training_step(self, model, batch):
        self.steps += 1
        if INTERRUPT_AT["step"] is not None and self.steps == INTERRUPT_AT["step"]:
            raise KeyboardInterrupt
        loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {"mse": loss}

    def predict(self, model, batch):
        return ((model(batch["x"]) - batch["y"]) ** 2).mean(dim=1).tolist()

    def score(self, records, out_dir):
        return {"mse": float(np.mean(records))}


register_task("tiny", TinyTask)


def tiny_config(**train):
    return {"task": "tiny",
            "train": {"epochs": 2, "batch_size": 4, "optimizer": {"name": "adamw", "lr": 0.01},
                      "lr_schedule": {"milestones": [1], "gamma": 0.5}, "log_every": 1, **train},
            "eval": {"every": 1}}


def weights(path):
    state, _ = load_weights(path)
    return state


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# -- configs ---------------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_config_inheritance_merges_mappings_and_replaces_values(tmp_path):
    write(tmp_path / "bases" / "root.yaml", """
        train: {epochs: 10, optimizer: {name: adam, lr: 0.1, betas: [0.5, 0.6]}}
        data: {augment: {flip_prob: 0.5, rotation: 30}}
    """)
    write(tmp_path / "bases" / "mid.yaml", """
        base: root.yaml
        train: {optimizer: {lr: 0.01}}
        data: {augment: {rotation: 45}}
    """)
    write(tmp_path / "other.yaml", "eval: {every: 5}\n")
    child = write(tmp_path / "exp" / "child.yaml", """
        base: [../bases/mid.yaml, ../other.yaml]
        train: {optimizer: {betas: [0.9, 0.99]}}
    """)
    cfg = load_config(child)
    assert cfg == {"train": {"epochs": 10, "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99]}},
                   "data": {"augment": {"flip_prob": 0.5, "rotation": 45}},
                   "eval": {"every": 5}}


def test_config_overrides_are_yaml_values_and_create_sections(tmp_path):
    path = write(tmp_path / "c.yaml", "train: {epochs: 3, optimizer: {lr: 0.1}}\n")
    cfg = load_config(path, ["train.optimizer.lr=1e-4", "train.lr_schedule.milestones=[130, 160]",
                             "eval.every=0", "train.grad_clip=null", "data.root=/tmp/x"])
    assert cfg["train"]["lr_schedule"]["milestones"] == [130, 160]
    assert cfg["eval"]["every"] == 0 and cfg["train"]["grad_clip"] is None and cfg["data"]["root"] == "/tmp/x"
    # YAML 1.1 reads "1e-4" as text: validation turns it into the number it means
    checked = validate(cfg["train"], {"epochs": Field("int"), "optimizer": {"lr": Field("float")},
                                      "lr_schedule": {"milestones": Field("ints")},
                                      "grad_clip": Field("float", nullable=True)})
    assert checked["optimizer"]["lr"] == 1e-4


@pytest.mark.parametrize("text, overrides, message", [
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1, nme: adam}}\n", [],
     "train.optimizer.nme"),
    ("task: tiny\ntrain: {epochs: two, batch_size: 4, optimizer: {lr: 0.1}}\n", [], "train.epochs"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1}}\n", ["train.epochs=0"], "train.epochs"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4}\n", [], "train.optimizer.lr"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1, name: rmsprop}}\n", [],
     "train.optimizer.name"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1}}\n",
     ["train.lr_schedule.milestones=[160, 130]"], "train.lr_schedule.milestones"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1}}\n",
     ["train.optimizer.betas=[0.9]"], "train.optimizer.betas"),
    ("task: nope\ntrain: {epochs: 2}\n", [], "unknown task 'nope'"),
    ("task: tiny\ntrain: {epochs: 2, batch_size: 4, optimizer: {lr: 0.1}}\n", ["train.epochs.x=1"],
     "train.epochs is a value"),
])
def test_config_errors_name_the_key(tmp_path, text, overrides, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(PosekitError, match=message.replace(".", r"\.").replace("[", r"\[")) as info:
        build_task(load_config(path, overrides), source=str(path))
    assert "\n" not in str(info.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(PosekitError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(PosekitError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(PosekitError, match="must be a YAML mapping"):
        load_config(tmp_path / "list.yaml")
    write(tmp_path / "broken.yaml", "train: {epochs: [1, 2\n")
    with pytest.raises(PosekitError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(PosekitError, match="section.key=value"):
        apply_overrides({}, ["epochs"])


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_round_trip_keeps_rng_states(tmp_path):
    torch.manual_seed(3)
    np.random.seed(4)
    state = {"rng": rng_state(), "epoch": 7, "config": {"a": [1, 2.5, "x"]}, "w": torch.arange(5.0)}
    expected = (np.random.random(3), torch.rand(3), __import__("random").random())
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["epoch"] == 7 and loaded["config"] == {"a": [1, 2.5, "x"]}
    set_rng_state(loaded["rng"])
    again = (np.random.random(3), torch.rand(3), __import__("random").random())
    assert np.array_equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert expected[2] == again[2]


class Payload:
    """Unpickling this would create a file: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_an_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(PosekitError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(PosekitError, match="refused"):
        load_weights(tmp_path / "evil.pt")
    assert not marker.exists()


def test_checkpoint_write_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def half_written(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoint_survives_a_process_killed_mid_write(tmp_path):
    """A real crash: the writer is SIGKILLed while the new file is half written."""
    path = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import os, signal, torch
        from pathlib import Path
        from posekit.engine.checkpoint import save_checkpoint
        save_checkpoint({{"epoch": 1, "w": torch.ones(1000)}}, {str(path)!r})
        def dying_save(obj, f):
            Path(f).write_bytes(b"PK\\x03\\x04" + b"x" * 5000)
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        save_checkpoint({{"epoch": 2, "w": torch.zeros(1000)}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the unfinished write
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(1000))


def test_unreadable_checkpoints(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PosekitError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(PosekitError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(PosekitError, match="not a readable safetensors"):
        load_weights(tmp_path / "junk.safetensors")


def test_safetensors_weights_carry_metadata(tmp_path):
    state = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.zeros(2)}
    save_weights(state, tmp_path / "w.safetensors", {"epoch": 3, "metrics": {"AP": 0.5}})
    loaded, meta = load_weights(tmp_path / "w.safetensors")
    assert_same_state(state, loaded)
    assert meta == {"epoch": 3, "metrics": {"AP": 0.5}}


# -- schedule --------------------------------------------------------------------------------------
def test_learning_rate_schedule_by_hand():
    sched = {"milestones": [130, 160], "gamma": 0.1, "warmup_iters": 0, "warmup_ratio": 0.001}
    assert learning_rate(1e-3, sched, 0, 10) == 1e-3
    assert learning_rate(1e-3, sched, 129, 10) == 1e-3
    assert learning_rate(1e-3, sched, 130, 10) == pytest.approx(1e-4, rel=1e-12)
    assert learning_rate(1e-3, sched, 160, 10) == pytest.approx(1e-5, rel=1e-12)
    warm = dict(sched, warmup_iters=500)
    assert learning_rate(1e-3, warm, 0, 0) == pytest.approx(1e-6)
    assert learning_rate(1e-3, warm, 0, 250) == pytest.approx(1e-3 * (0.001 + 0.999 * 0.5))
    assert learning_rate(1e-3, warm, 0, 500) == 1e-3


# -- training, resume ------------------------------------------------------------------------------
def test_training_reduces_the_loss_and_writes_the_run_folder(tmp_path):
    config = tiny_config(epochs=3)
    summary = train(config, tmp_path / "run")
    run = tmp_path / "run"
    assert {"config.yaml", "train_log.csv", "eval_log.csv", "last.pt", "best.safetensors"} <= {
        p.name for p in run.iterdir()}
    rows = read_csv(run / "train_log.csv")
    assert len(rows) == 3 * 8 and rows[-1]["step"] == "24"
    first, last = float(rows[0]["mse"]), float(rows[-1]["mse"])
    assert last < 0.5 * first
    lrs = {r["epoch"]: float(r["lr"]) for r in rows}
    assert lrs == {"1": 0.01, "2": 0.005, "3": 0.005}
    evals = read_csv(run / "eval_log.csv")
    assert [r["epoch"] for r in evals] == ["1", "2", "3"]
    best = min(range(3), key=lambda i: float(evals[i]["mse"]))
    assert summary["best"]["epoch"] == best + 1
    assert summary["best"]["value"] == pytest.approx(float(evals[best]["mse"]))
    # the saved best weights score what the log says
    metrics = evaluate_weights(config, run / "best.safetensors", tmp_path / "test")
    assert metrics["mse"] == pytest.approx(float(evals[best]["mse"]), rel=1e-6)
    with pytest.raises(PosekitError, match="already holds a run"):
        train(config, run)


@pytest.mark.parametrize("workers, interrupt_step, checkpoint_every", [
    (0, 11, 0),   # killed in epoch 2: resumes from the end of epoch 1
    (0, 14, 3),   # resumes from the mid-epoch checkpoint at step 12
    (1, 13, 5),   # with a worker process: resumes from step 10 (epoch 2, batch 2)
])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, workers, interrupt_step, checkpoint_every):
    config = tiny_config(num_workers=workers, checkpoint_every=checkpoint_every)
    straight = train(config, tmp_path / "straight")
    INTERRUPT_AT["step"] = interrupt_step
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "resumed")
    finally:
        INTERRUPT_AT["step"] = None
    saved = load_checkpoint(tmp_path / "resumed" / "last.pt")
    expected_step = 8 if checkpoint_every == 0 else (interrupt_step - 1) // checkpoint_every * checkpoint_every
    assert saved["step"] == expected_step
    resumed = train(config, tmp_path / "resumed", resume=True)
    assert resumed["step"] == straight["step"] == 16
    assert_same_state(weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "resumed" / "last.pt"))
    assert_same_state(load_checkpoint(tmp_path / "straight" / "last.pt")["optimizer"]["state"][0],
                      load_checkpoint(tmp_path / "resumed" / "last.pt")["optimizer"]["state"][0])
    assert read_csv(tmp_path / "straight" / "train_log.csv") != []
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds_per_step"} for r in rows]  # noqa: E731
    assert strip(read_csv(tmp_path / "straight" / "train_log.csv")) == strip(
        read_csv(tmp_path / "resumed" / "train_log.csv"))
    assert read_csv(tmp_path / "straight" / "eval_log.csv") == read_csv(tmp_path / "resumed" / "eval_log.csv")
    assert straight["best"] == resumed["best"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_learns_and_resumes_bit_identically(tmp_path, precision):
    config = tiny_config(epochs=3, precision=precision)
    probe = Trainer(config, tmp_path / "probe")
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the loss always sees float32 outputs
        assert probe.module(torch.zeros(2, 4)).dtype == torch.float32
    train(config, tmp_path / "straight")
    mse = [float(r["mse"]) for r in read_csv(tmp_path / "straight" / "train_log.csv")]
    assert np.mean(mse[-8:]) < np.mean(mse[:8])
    train(tiny_config(epochs=3), tmp_path / "fp32")   # the forward pass ran in 16 bits: near float32's, not equal
    low, full = (weights(tmp_path / run / "last.pt")["0.weight"] for run in ("straight", "fp32"))
    assert not torch.equal(low, full) and torch.allclose(low, full, atol=0.1)
    assert bool(load_checkpoint(tmp_path / "straight" / "last.pt")["scaler"]) == (precision == "fp16")
    INTERRUPT_AT["step"] = 19
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "resumed")
    finally:
        INTERRUPT_AT["step"] = None
    train(config, tmp_path / "resumed", resume=True)
    assert_same_state(weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "resumed" / "last.pt"))
    assert load_checkpoint(tmp_path / "straight" / "last.pt")["scaler"] == \
        load_checkpoint(tmp_path / "resumed" / "last.pt")["scaler"]


def test_seed_changes_the_result_and_resume_refuses_a_changed_config(tmp_path):
    a = Trainer(tiny_config(epochs=1), tmp_path / "a")
    a.fit()
    b = Trainer(tiny_config(epochs=1, seed=1), tmp_path / "b")
    b.fit()
    assert not torch.equal(a.module[0].weight, b.module[0].weight)
    with pytest.raises(PosekitError, match=r"train\.seed differs"):
        Trainer(tiny_config(epochs=2, seed=5), tmp_path / "a").fit(resume=True)
    more = Trainer(tiny_config(epochs=2), tmp_path / "a")  # more epochs is a legitimate resume
    assert more.fit(resume=True)["epoch"] == 2


def test_diverging_training_is_reported(tmp_path):
    config = tiny_config(epochs=1)
    config["train"]["optimizer"]["lr"] = 1e30
    with pytest.raises(PosekitError, match="diverged"):
        train(config, tmp_path / "run")


def test_batch_size_must_split_over_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    with pytest.raises(PosekitError, match="divisible by the number of processes"):
        Trainer(tiny_config(), tmp_path)


def test_weights_files_of_other_tools(tmp_path):
    """Bare state dicts, ones under 'state_dict' (HRNet, MMPose) and DataParallel's 'module.' keys."""
    state = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.zeros(2)}
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "nested.pth")
    for name in ("bare.pth", "nested.pth"):
        loaded, _ = load_weights(tmp_path / name)
        assert_same_state(state, loaded)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_weights.pt")
    with pytest.raises(PosekitError, match="not a named tensor"):
        load_weights(tmp_path / "no_weights.pt")
