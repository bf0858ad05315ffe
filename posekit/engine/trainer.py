"""The training and evaluation loop shared by every trainable posekit method.

A :class:`~posekit.engine.tasks.Task` supplies the model, datasets, loss and metrics; the engine does
the rest, the same way for every method:

* Reproducibility. The data order of epoch ``e`` is a permutation seeded with ``seed + e``; each
  training sample draws its augmentation from a generator seeded with (seed, epoch, index); worker
  processes are seeded from (seed, epoch, rank, worker). The learning rate is a pure function of the
  epoch and the iteration. Checkpoints store the model, the optimizer, the position (epoch, iteration
  within it, global step) and every process's python/numpy/torch generator states, so a run resumed
  from ``last.pt`` continues bit for bit as if it had never stopped (on the same hardware and process
  count), also from the middle of an epoch (``train.checkpoint_every``).
* Processes. Started under ``torchrun`` (``WORLD_SIZE`` > 1), each process trains a
  ``DistributedDataParallel`` replica (gloo on CPU, NCCL on GPUs) on its share of every batch:
  ``train.batch_size`` is the total over processes, and process ``r`` takes samples ``r, r + P, ...``
  of the epoch's permutation, so one step sees the same samples whatever the process count. Evaluation
  is split the same way and gathered; only process 0 writes logs and checkpoints.
* Arithmetic. ``train.precision`` ``bf16`` or ``fp16`` runs the model's forward pass under
  ``torch.autocast`` (fp16 with a gradient scaler, whose state the checkpoint keeps); the model's
  outputs are cast back to float32 before the loss, and weights, optimizer and evaluation stay
  float32. It is the common way to train faster on GPUs; on this project's CPU (AVX-512 bfloat16)
  bf16 makes a DITN-W18-small training step 1.44x faster.
* Outputs in the run folder: ``config.yaml`` (the exact settings), ``train_log.csv`` and
  ``eval_log.csv``, ``last.pt`` (resumable state), ``best.safetensors`` (weights of the best
  evaluation, with its config and metrics), TensorBoard events in ``tb/`` when ``tensorboard`` is
  installed, and whatever result files the task writes.
"""
from __future__ import annotations

import bisect
import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from posekit.engine.checkpoint import (load_checkpoint, load_weights, rng_state, save_checkpoint,
                                       save_weights, set_rng_state)
from posekit.engine.config import dump_config, flatten
from posekit.engine.tasks import Task, build_task
from posekit.errors import PosekitError

# Settings that may change when a run is resumed: they do not alter what is computed.
RESUMABLE_KEYS = frozenset({"train.epochs", "train.num_workers", "train.log_every", "train.device",
                            "train.checkpoint_every", "eval.every", "eval.batch_size"})


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator a training sample draws its augmentation from."""
    return np.random.default_rng([seed, epoch, index])


def _outputs_to_float32(module, inputs, outputs):
    """Forward hook: the model's floating outputs (a tensor, or a dict/tuple/list of them) as
    float32, so that losses computed from an autocast forward pass keep full precision."""
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.float()
        if isinstance(value, dict):
            return {k: cast(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return type(value)(cast(v) for v in value)
        return value

    return cast(outputs)


def seed_everything(seed) -> None:
    """Seed python, numpy and torch (``seed``: an int or a list of ints, mixed into one)."""
    value = int(np.random.SeedSequence(seed).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def learning_rate(base_lr: float, schedule: dict, epoch: int, step: int) -> float:
    """Multi-step decay (x gamma after each milestone epoch) with an optional linear warm-up."""
    factor = schedule["gamma"] ** bisect.bisect_right(schedule["milestones"], epoch)
    warmup = schedule["warmup_iters"]
    if step < warmup:
        ratio = schedule["warmup_ratio"]
        factor *= ratio + (1.0 - ratio) * step / warmup
    return base_lr * factor


def build_optimizer(parameters, settings: dict) -> torch.optim.Optimizer:
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise PosekitError("the model has no trainable parameters")
    name, lr, decay = settings["name"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        if settings["nesterov"] and settings["momentum"] <= 0:
            raise PosekitError("config train.optimizer.nesterov needs a positive momentum")
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=decay,
                               nesterov=settings["nesterov"])
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(settings["betas"]), eps=settings["eps"], weight_decay=decay)


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _start_processes(device_kind: str) -> tuple[Processes, bool]:
    """Join the process group torchrun describes (if any); True when this call created it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), False
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))), created


def _device(kind: str, processes: Processes) -> torch.device:
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise PosekitError("config train.device is cuda, but no CUDA device is available")
        torch.cuda.set_device(processes.local_rank)
        return torch.device("cuda", processes.local_rank)
    return torch.device("cpu")


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _init_worker(seed: int, epoch: int, rank: int, worker_id: int) -> None:
    """Seed a data-loading worker and keep it to one thread (the workers are the parallelism)."""
    seed_everything([seed, epoch, rank, worker_id])
    torch.set_num_threads(1)
    cv2.setNumThreads(0)


class SeededSamples(Dataset):
    """Training samples whose augmentation is a function of (seed, epoch, index) only."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset.sample(index, sample_rng(self.seed, self.epoch, index))
        return {**sample, "index": index}


class IndexedSamples(Dataset):
    """Evaluation samples tagged with their index, so results gathered from processes can be ordered."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


class CsvLog:
    """A CSV file with a fixed header (from the first row), continued after a resume."""

    def __init__(self, path: Path, keep_through_step: int | None):
        self.fields = None
        rows = []
        if keep_through_step is not None and path.exists():
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["step"]) <= keep_through_step]
        self.handle = path.open("w", newline="")
        self.writer = None
        if self.fields:
            self.writer = csv.DictWriter(self.handle, fieldnames=self.fields)
            self.writer.writeheader()
            self.writer.writerows(rows)
            self.handle.flush()

    def write(self, row: dict) -> None:
        if self.writer is None:
            self.fields = list(row)
            self.writer = csv.DictWriter(self.handle, fieldnames=self.fields)
            self.writer.writeheader()
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _tensorboard(path: Path):
    """A TensorBoard writer when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


class Trainer:
    """One run: a task, its model and optimizer, and the run folder ``out_dir``.

    ``config``: the merged config (validated here against the engine's and the task's schema);
    ``source``: how to name it in error messages (the config file).
    """

    def __init__(self, config: dict, out_dir, *, source: str = "config"):
        self.task: Task = build_task(config, source)
        self.config = self.task.config
        self.out_dir = Path(out_dir)
        settings = self.config["train"]
        kind = settings["device"]
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        self.processes, self._owns_group = _start_processes(kind)
        self.device = _device(kind, self.processes)
        world = self.processes.world
        if settings["batch_size"] % world:
            raise PosekitError(f"config train.batch_size ({settings['batch_size']}) must be divisible by "
                               f"the number of processes ({world})")
        self.batch_per_process = settings["batch_size"] // world
        self.seed = settings["seed"]
        seed_everything(self.seed)  # the same initial weights in every process
        self.module = self.task.build_model().to(self.device)
        self.model = self.module
        if world > 1:
            self.model = DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.module.parameters(), settings["optimizer"])
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[settings["precision"]]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=settings["precision"] == "fp16")
        if self.autocast_dtype is not None:
            self.module.register_forward_hook(_outputs_to_float32)
        seed_everything([self.seed, self.processes.rank])  # training randomness differs per process
        self.metric = self.config["eval"]["metric"] or self.task.metric
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best = {"metric": self.metric, "value": None, "epoch": None}
        self._train_set = self._val_set = None
        self._logs: dict[str, CsvLog] = {}
        self._board = None

    # -- data ------------------------------------------------------------------------------------
    def _loader(self, dataset, batches: list, epoch: int) -> DataLoader:
        workers = self.config["train"]["num_workers"]
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, epoch, self.processes.rank]).generate_state(1)[0]))
        return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                          collate_fn=self.task.collate, pin_memory=self.device.type == "cuda",
                          worker_init_fn=partial(_init_worker, self.seed, epoch, self.processes.rank),
                          generator=generator)

    def _train_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of ``epoch``: its share of the epoch's seeded permutation."""
        if self._train_set is None:
            self._train_set = SeededSamples(self.task.train_dataset(), self.seed)
        if len(self._train_set) == 0:
            raise PosekitError("the training set is empty")
        sampler = DistributedSampler(self._train_set, num_replicas=self.processes.world,
                                     rank=self.processes.rank, shuffle=True, seed=self.seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        size = self.batch_per_process
        batches = [indices[i:i + size] for i in range(0, len(indices), size)]
        if self.config["train"]["drop_last"] and len(batches[-1]) < size:
            batches.pop()
        if not batches:
            raise PosekitError(f"the training set ({len(self._train_set)} samples) is smaller than one "
                               f"batch (train.batch_size) and train.drop_last is set")
        return batches

    # -- training --------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train to ``train.epochs`` (continuing ``last.pt`` when ``resume``); returns a summary."""
        last = self.out_dir / "last.pt"
        if resume:
            self._restore(last)
        elif last.exists():
            raise PosekitError(f"{self.out_dir} already holds a run (last.pt); resume it with --resume "
                               f"or choose another --out")
        if self.processes.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.config, self.out_dir / "config.yaml")
            keep = self.step if resume else None
            self._logs = {name: CsvLog(self.out_dir / f"{name}_log.csv", keep) for name in ("train", "eval")}
            self._board = _tensorboard(self.out_dir / "tb")
        metrics = {}
        try:
            epochs = self.config["train"]["epochs"]
            every = self.config["eval"]["every"]
            while self.epoch < epochs:
                self._train_epoch()
                if (every and self.epoch % every == 0) or self.epoch == epochs:
                    metrics = self._evaluate_and_keep_best()
                self._save_last()
        finally:
            self._close_logs()
        return {"epoch": self.epoch, "step": self.step, "metrics": metrics, "best": dict(self.best)}

    def _train_epoch(self) -> None:
        settings = self.config["train"]
        epoch = self.epoch
        batches = self._train_batches(epoch)
        self._train_set.epoch = epoch
        loader = self._loader(self._train_set, batches[self.batch_in_epoch:], epoch)
        self.model.train()
        params = [p for p in self.module.parameters() if p.requires_grad]
        running, count, tick = None, 0, time.perf_counter()
        bar = tqdm(total=len(batches), initial=self.batch_in_epoch, leave=False, dynamic_ncols=True,
                   desc=f"epoch {epoch + 1}/{settings['epochs']}",
                   disable=None if self.processes.is_main else True)
        for batch in loader:
            lr = learning_rate(settings["optimizer"]["lr"], settings["lr_schedule"], epoch, self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                loss, parts = self.task.training_step(self.model, _to_device(batch, self.device))
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, settings["grad_clip"] or math.inf)
            if not torch.isfinite(norm) and not self.scaler.is_enabled():  # fp16: the scaler skips the step
                raise PosekitError(f"training diverged at epoch {epoch + 1}, step {self.step + 1}: the "
                                   f"gradient norm is {float(norm)} (try a lower train.optimizer.lr)")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            self.batch_in_epoch += 1
            values = torch.stack([loss.detach().float(), norm.detach().float()]
                                 + [v.detach().float() for v in parts.values()]).cpu()
            running = values if running is None else running + values
            count += 1
            bar.update(1)
            if self.step % settings["log_every"] == 0 or self.batch_in_epoch == len(batches):
                means = self._mean_over_processes(running / count).tolist()
                now = time.perf_counter()
                row = {"epoch": epoch + 1, "step": self.step, "lr": lr, "loss": means[0],
                       "grad_norm": means[1], **dict(zip(parts, means[2:])),
                       "seconds_per_step": (now - tick) / count}
                self._log("train", row)
                bar.set_postfix(loss=f"{means[0]:.4g}")
                running, count, tick = None, 0, now
            if (settings["checkpoint_every"] and self.step % settings["checkpoint_every"] == 0
                    and self.batch_in_epoch < len(batches)):
                self._save_last()
        bar.close()
        self.epoch += 1
        self.batch_in_epoch = 0

    def _mean_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.processes.world > 1:
            values = values.to(self.device)
            dist.all_reduce(values)
            values = values.cpu() / self.processes.world
        return values

    # -- evaluation ------------------------------------------------------------------------------
    def has_evaluation(self) -> bool:
        if self._val_set is None:
            dataset = self.task.val_dataset()
            self._val_set = False if dataset is None else IndexedSamples(dataset)
        return self._val_set is not False

    def evaluate(self) -> dict:
        """The task's metrics on its evaluation set ({} when it has none), in every process."""
        if not self.has_evaluation():
            return {}
        if self.processes.world > 1:  # evaluate process 0's batch-norm statistics everywhere
            for buffer in self.module.buffers():
                dist.broadcast(buffer, 0)
        rank, world = self.processes.rank, self.processes.world
        mine = list(range(rank, len(self._val_set), world))
        size = self.config["eval"]["batch_size"]
        loader = self._loader(self._val_set, [mine[i:i + size] for i in range(0, len(mine), size)], 0)
        records = []
        self.module.eval()
        with torch.no_grad():
            for batch in tqdm(loader, leave=False, desc="evaluate", dynamic_ncols=True,
                              disable=None if self.processes.is_main else True):
                indices = batch["index"].tolist()
                records.extend(zip(indices, self.task.predict(self.module, _to_device(batch, self.device))))
        self.module.train()
        if world > 1:
            parts = [None] * world
            dist.all_gather_object(parts, records)
            records = [r for part in parts for r in part]
        records.sort(key=lambda r: r[0])
        metrics = None
        if self.processes.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            metrics = self.task.score([r for _, r in records], self.out_dir)
        if world > 1:
            box = [metrics]
            dist.broadcast_object_list(box, 0)
            metrics = box[0]
        return metrics

    def _evaluate_and_keep_best(self) -> dict:
        metrics = self.evaluate()
        if not metrics:
            return metrics
        if self.metric not in metrics:
            raise PosekitError(f"config eval.metric {self.metric!r} is not one of the task's metrics "
                               f"({', '.join(metrics)})")
        self._log("eval", {"epoch": self.epoch, "step": self.step, **metrics})
        value = float(metrics[self.metric])
        best = self.best["value"]
        better = not math.isnan(value) and (
            best is None or (value > best if self.task.higher_is_better else value < best))
        if better:
            self.best.update(value=value, epoch=self.epoch)
            if self.processes.is_main:
                save_weights(self.module.state_dict(), self.out_dir / "best.safetensors",
                             {"config": self.config, "epoch": self.epoch, "step": self.step,
                              "metrics": metrics})
        if self.processes.is_main:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            tqdm.write(f"epoch {self.epoch}: {shown}")
        return metrics

    # -- checkpoints -----------------------------------------------------------------------------
    def _save_last(self) -> None:
        states = [rng_state()]
        if self.processes.world > 1:
            states = [None] * self.processes.world
            dist.all_gather_object(states, rng_state())
        if not self.processes.is_main:
            return
        save_checkpoint({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "scaler": self.scaler.state_dict(),
                         "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                         "rng": states, "best": dict(self.best), "config": self.config},
                        self.out_dir / "last.pt")

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        missing = {"model", "optimizer", "epoch", "batch_in_epoch", "step", "rng", "best", "config"} - set(state)
        if missing:
            raise PosekitError(f"{path}: not a posekit training checkpoint (no {', '.join(sorted(missing))})")
        old, new = flatten(state["config"]), flatten(self.config)
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k not in RESUMABLE_KEYS)
        if changed:
            raise PosekitError(f"{path}: config {changed[0]} differs from the interrupted run "
                               f"({old.get(changed[0])!r} there, {new.get(changed[0])!r} now)")
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise PosekitError(f"{path}: the saved state does not fit the model ({str(exc).splitlines()[0]})") from None
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.best = state["best"]
        if len(state["rng"]) == self.processes.world:
            set_rng_state(state["rng"][self.processes.rank])
        else:
            seed_everything([self.seed, self.processes.rank, self.step])
            if self.processes.is_main:
                tqdm.write(f"{path}: saved by {len(state['rng'])} processes, resumed by "
                           f"{self.processes.world}: training continues, but not bit-identically")

    # -- logs ------------------------------------------------------------------------------------
    def _log(self, name: str, row: dict) -> None:
        if not self.processes.is_main:
            return
        self._logs[name].write(row)
        if self._board is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self._board.add_scalar(f"{name}/{key}", value, row["step"])

    def _close_logs(self) -> None:
        for log in self._logs.values():
            log.close()
        self._logs = {}
        if self._board is not None:
            self._board.close()
            self._board = None

    def close(self) -> None:
        """Leave the process group this trainer joined."""
        if self._owns_group and dist.is_initialized():
            # Wait for every process before tearing down: gloo aborts a process whose peer
            # leaves while a collective is still in flight.
            dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False


def train(config: dict, out_dir, *, resume: bool = False, source: str = "config") -> dict:
    """Train the task the config names; see :meth:`Trainer.fit`."""
    trainer = Trainer(config, out_dir, source=source)
    try:
        return trainer.fit(resume=resume)
    finally:
        trainer.close()


def evaluate_weights(config: dict, weights, out_dir, *, source: str = "config") -> dict:
    """Evaluate saved weights (``best.safetensors``, ``last.pt``...) on the config's evaluation set.

    Writes ``metrics.json`` (and the task's result files) to ``out_dir``; returns the metrics.
    """
    trainer = Trainer(config, out_dir, source=source)
    try:
        state, _ = load_weights(weights)
        trainer.task.load_weights(trainer.module, state, str(weights))
        if not trainer.has_evaluation():
            raise PosekitError(f"{source}: the config has no evaluation set")
        metrics = trainer.evaluate()
        if trainer.processes.is_main:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            finite = {k: (v if not (isinstance(v, float) and math.isnan(v)) else None) for k, v in metrics.items()}
            (Path(out_dir) / "metrics.json").write_text(json.dumps(finite, indent=2), encoding="utf-8")
        return metrics
    finally:
        trainer.close()


__all__ = ["Trainer", "train", "evaluate_weights", "learning_rate", "build_optimizer", "sample_rng",
           "seed_everything", "Processes", "RESUMABLE_KEYS"]
