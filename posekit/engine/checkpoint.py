"""Checkpoints that survive crashes and never execute code when loaded.

Two files, two purposes:

* ``*.pt``: the whole training state (model, optimizer, epoch, step, random generator states, config)
  written with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which only accepts
  tensors and plain Python values: a file holding any other object is refused, not unpickled.
* ``*.safetensors``: model weights only, with a few text fields (config, epoch, metrics), for
  deployment and ``posekit test``.

Writes go to a temporary file in the same folder that is then renamed over the target
(``os.replace``), so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from posekit.errors import PosekitError


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the finished file over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict, path) -> None:
    """Write a training state (tensors and plain values only) atomically."""
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path) -> dict:
    """Read a ``.pt`` training state without unpickling arbitrary objects (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise PosekitError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise PosekitError(f"{path}: not a readable torch checkpoint (UnpicklingError)") from None
        raise PosekitError(f"{path}: refused: the checkpoint holds an object other than tensors and "
                           f"plain values ({found.group(1)}), which is never unpickled") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise PosekitError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise PosekitError(f"{path}: a checkpoint must hold a dict, got {type(state).__name__}")
    return state


def save_weights(state_dict: dict, path, metadata: dict | None = None) -> None:
    """Write model weights as safetensors; ``metadata`` values are stored as JSON text."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_weights(path) -> tuple[dict, dict]:
    """(model state dict, metadata) from a weights file.

    Accepts ``.safetensors`` (with its metadata), a posekit training checkpoint (its ``model``), or a
    weights-only ``.pt``/``.pth`` state dict, bare or under ``state_dict`` (HRNet, MMPose releases).
    A ``module.`` prefix on every key (a model saved from DataParallel) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise PosekitError(f"{path}: no such weights file")
    metadata = {}
    if path.suffix == ".safetensors":
        try:
            weights = load_file(str(path))
            with safe_open(str(path), framework="pt") as handle:
                raw = handle.metadata() or {}
            metadata = {k: json.loads(v) for k, v in raw.items()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise PosekitError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
    else:
        state = load_checkpoint(path)
        if isinstance(state.get("model"), dict):
            weights = state["model"]
            metadata = {k: state[k] for k in ("config", "epoch", "step") if k in state}
        else:
            weights = state["state_dict"] if isinstance(state.get("state_dict"), dict) else state
    bad = [k for k, v in weights.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise PosekitError(f"{path}: entry {bad[0]!r} is not a named tensor (not a model's weights)")
    if weights and all(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items()}
    return weights, metadata


def rng_state() -> dict:
    """The python, numpy and torch generator states as tensors and plain values."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` recorded."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "rng_state",
           "set_rng_state"]
