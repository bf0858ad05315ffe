"""Tasks: what one method supplies to the shared training engine, and the registry that names them.

A task turns a validated config into a model, datasets, a loss and an evaluation. The engine owns
everything else (data order, optimizer, schedule, checkpoints, logging, processes). To add a method,
subclass :class:`Task` and add one line to ``TASKS`` (or call :func:`register_task` from your code).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch.utils.data import default_collate

from posekit.engine.config import Field, merge, validate
from posekit.errors import PosekitError


class Task:
    """Base class of the engine's tasks.

    ``schema`` declares the config sections the task reads (merged with the engine's own ``train``
    and ``eval`` sections); ``metric`` names the evaluation number that picks the best checkpoint.

    Datasets: the training set has ``__len__`` and ``sample(index, rng) -> dict``, drawing all of its
    randomness from ``rng`` (a numpy Generator the engine derives from the seed, the epoch and the
    index, so augmentation does not depend on worker processes or on where a run was resumed).
    The evaluation set has ``__len__`` and ``__getitem__(index) -> dict``. Samples are dicts of
    arrays/tensors that :meth:`collate` batches.
    """

    schema: dict = {}
    metric: str = "loss"
    higher_is_better: bool = True

    def __init__(self, config: dict):
        self.config = config

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def train_dataset(self):
        raise NotImplementedError

    def val_dataset(self):
        """The evaluation set, or None when the task has nothing to evaluate on."""
        return None

    def collate(self, samples: list[dict]) -> dict:
        return default_collate(samples)

    def training_step(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        """(loss to minimise, {name: scalar tensor} of its parts, for the logs)."""
        raise NotImplementedError

    def predict(self, model, batch: dict) -> list:
        """One picklable record per sample of an evaluation batch (the model is in eval mode)."""
        raise NotImplementedError

    def load_weights(self, model: torch.nn.Module, state_dict: dict, source: str) -> None:
        """Put saved weights into the model (``source`` names the file in errors)."""
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise PosekitError(f"{source}: the weights do not fit the model ({str(exc).splitlines()[0]})") from None

    def score(self, records: list, out_dir: Path | None) -> dict:
        """Metrics {name: float} from the records of the whole evaluation set, in dataset order.

        ``out_dir``: where result files (e.g. COCO results JSON) may be written, or None.
        """
        raise NotImplementedError


# name -> "module:Class"; imported only when used, so a task's dependencies load on demand.
TASKS: dict[str, str | type] = {
    "topdown2d": "posekit.engine.topdown_task:TopDown2DTask",
    "lift3d": "posekit.lift.task:Lift3DTask",
}


def register_task(name: str, task: str | type) -> None:
    """Make ``task`` (a Task subclass or a "module:Class" path) available as ``task: name``."""
    TASKS[name] = task


def get_task(name: str) -> type:
    """A registered task, or one given as "module:Class" (a user's own task, importable)."""
    entry = TASKS.get(name, name if ":" in name else None)
    if entry is None:
        raise PosekitError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))} "
                           f"(or module:Class)")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PosekitError(f"task {name!r}: cannot import {module}:{attr} ({exc})") from None
        if not (isinstance(entry, type) and issubclass(entry, Task)):
            raise PosekitError(f"task {name!r}: {module}:{attr} is not a posekit Task class")
        TASKS[name] = entry
    return entry


ENGINE_SCHEMA = {
    "task": Field("str", doc="registered task name"),
    "train": {
        "epochs": Field("int", minimum=1),
        "batch_size": Field("int", minimum=1, doc="samples per optimizer step, over all processes"),
        "optimizer": {
            "name": Field("str", "adamw", choices=("adamw", "adam", "sgd")),
            "lr": Field("float", minimum=0.0),
            "weight_decay": Field("float", 0.0, minimum=0.0),
            "betas": Field("floats", [0.9, 0.999], length=2, minimum=0.0, maximum=0.999999),
            "eps": Field("float", 1e-8, minimum=0.0),
            "momentum": Field("float", 0.9, minimum=0.0),
            "nesterov": Field("bool", False),
        },
        "lr_schedule": {
            "milestones": Field("ints", [], minimum=1, doc="epochs after which lr *= gamma"),
            "gamma": Field("float", 0.1, minimum=0.0),
            "warmup_iters": Field("int", 0, minimum=0, doc="linear warm-up over the first iterations"),
            "warmup_ratio": Field("float", 0.001, minimum=0.0, maximum=1.0),
        },
        "seed": Field("int", 0, minimum=0),
        "num_workers": Field("int", 0, minimum=0),
        "drop_last": Field("bool", False),
        "grad_clip": Field("float", None, minimum=0.0, nullable=True, doc="max gradient norm"),
        "checkpoint_every": Field("int", 0, minimum=0, doc="iterations between mid-epoch saves"),
        "log_every": Field("int", 20, minimum=1),
        "device": Field("str", "auto", choices=("auto", "cpu", "cuda")),
        "precision": Field("str", "fp32", choices=("fp32", "bf16", "fp16"),
                           doc="training arithmetic: bf16/fp16 run the forward pass under autocast "
                               "(fp16 with loss scaling); losses, weights and evaluation stay float32"),
    },
    "eval": {
        "every": Field("int", 1, minimum=0, doc="epochs between evaluations; 0: after the last only"),
        "batch_size": Field("int", 32, minimum=1),
        "metric": Field("str", None, nullable=True, doc="the metric that picks the best checkpoint"),
    },
}


def build_task(config: dict, source: str = "config") -> Task:
    """The task named by ``config['task']``, holding the config validated against its schema."""
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise PosekitError(f"{source}: config task must name a task ({', '.join(sorted(TASKS))})")
    cls = get_task(config["task"])
    checked = validate(config, merge(ENGINE_SCHEMA, cls.schema), source=source)
    milestones = checked["train"]["lr_schedule"]["milestones"]
    if milestones != sorted(set(milestones)):
        raise PosekitError(f"{source}: config train.lr_schedule.milestones must increase, got {milestones}")
    return cls(checked)


__all__ = ["Task", "TASKS", "ENGINE_SCHEMA", "register_task", "get_task", "build_task"]
