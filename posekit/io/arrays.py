"""Reading numeric arrays from user files with errors that name the file and the key."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import yaml

from posekit.errors import PosekitError


def read_npz_array(path, key: str, *, ndim: int | None = None, last_dim: int | None = None,
                   allow_nan: bool = False) -> np.ndarray:
    """One numeric array from an .npz file, checked for presence, shape and finiteness."""
    path = Path(path)
    if not path.is_file():
        raise PosekitError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise PosekitError(f"{path}: no array {key!r} (found: {', '.join(archive.files) or 'none'})")
            arr = archive[key]
    except PosekitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PosekitError(f"{path}: not a readable .npz archive ({type(exc).__name__})") from None
    if arr.dtype.kind not in "biuf":
        raise PosekitError(f"{path}: {key!r} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(float)
    if ndim is not None and arr.ndim != ndim:
        raise PosekitError(f"{path}: {key!r} must have {ndim} dimensions, got shape {arr.shape}")
    if last_dim is not None and arr.shape[-1] != last_dim:
        raise PosekitError(f"{path}: {key!r} must end in {last_dim} coordinates, got shape {arr.shape}")
    if not allow_nan and not np.all(np.isfinite(arr)):
        raise PosekitError(f"{path}: {key!r} contains NaN or infinite values")
    return arr


def read_number_list(path) -> np.ndarray:
    """A list of numbers from a JSON/YAML file: a bare list, or a mapping with a 'sigmas' list."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PosekitError(f"{path}: not readable JSON/YAML ({type(exc).__name__})") from None
    if isinstance(data, dict):
        data = data.get("sigmas")
    try:
        arr = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise PosekitError(f"{path}: expected a list of numbers (or a mapping with 'sigmas')")
    return arr
