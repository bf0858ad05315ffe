"""Load untrusted dataset files (pickle, npz, JSON, MATLAB) with one-line errors and no code execution.

A pickle is a program: ``pickle.load`` imports and calls whatever the file names (``os.system`` included).
Dataset files such as Human3.6M's ``cameras.pkl`` and VideoPose3D's ``data_3d_h36m.npz`` (dicts pickled
inside npz) only need numpy arrays and plain containers, so the unpickler here resolves a short allow-list
of names and refuses everything else with a :class:`PosekitError` before anything is called.

The JSON helpers give the dataset readers the same guarantee for annotation files: whatever the bytes,
the only exception that escapes is a :class:`PosekitError` naming the file and field.

MATLAB files go through :func:`read_mat`, a small reader of its own: scipy's compiled MAT-5 reader
dereferences a wild pointer (the process dies) when a data element carries an unexpected type code, as a
damaged download can.
"""
from __future__ import annotations

import codecs
import io
import json
import math
import pickle
import reprlib
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np

from posekit.errors import PosekitError


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise PosekitError(f"pickle asks for _codecs.encode with encoding {describe(encoding)}; only latin-1 "
                           f"is allowed")
    return text.encode("latin1")


def _numpy_helpers() -> dict:
    # The helpers are taken from numpy's own reductions, so both the numpy 1 names (numpy.core...)
    # and the numpy 2 names (numpy._core...) resolve to whichever module this numpy has.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
        allowed[(f"{core}.multiarray", "dtype")] = np.dtype
        allowed[(f"{core}.multiarray", "ndarray")] = np.ndarray
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


_ALLOWED = {
    **_numpy_helpers(),
    **{(module, name): obj
       for module in ("builtins", "__builtin__")
       for name, obj in {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
                         "bytearray": bytearray, "complex": complex}.items()},
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}


def _canonical_dtype(dtype: np.dtype, state) -> np.dtype:
    """The dtype a pickle's BUILD may produce: ``dtype`` itself, or it in the other byte order.

    ``dtype.__setstate__`` would accept any flags and sizes (a float64 flagged as holding objects, say), so
    the state is only accepted when it is exactly the state numpy itself writes for that dtype.
    """
    simple = type(state) is tuple and all(x is None or type(x) in (int, str) for x in state)
    if simple and len(state) > 1:
        candidates = [dtype] + ([dtype.newbyteorder(state[1])] if state[1] in ("<", ">") else [])
        for candidate in candidates:
            if candidate.__reduce__()[2] == state:
                return candidate
    raise PosekitError(f"pickle gives dtype {dtype} a state numpy would not write ({describe(state)})")


def _check_array_state(state):
    """Refuse an ndarray state numpy would mishandle: an object array given fewer items than its shape
    holds makes ``ndarray.__setstate__`` read past the list (the process dies)."""
    ok = type(state) is tuple and len(state) in (4, 5)
    if ok:
        shape, dtype, data = state[-4], state[-3], state[-1]
        ok = (type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape)
              and isinstance(dtype, np.dtype)
              and (not dtype.hasobject or (type(data) is list and len(data) == math.prod(shape))))
    if not ok:
        raise PosekitError(f"pickle gives an array the state {describe(state)}, which numpy would not write")


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that only knows numpy array reconstruction and builtin containers.

    The pure-Python unpickler is used so that BUILD on a dtype can be checked (see _canonical_dtype).
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise PosekitError(f"pickle refers to {describe(f'{module}.{name}')}, which is not allowed "
                               f"(only numpy arrays and plain containers are loaded)") from None

    def load_build(self):
        state, instance = self.stack[-1], self.stack[-2]
        if isinstance(instance, np.ndarray):
            _check_array_state(state)
        if not isinstance(instance, np.dtype):
            return pickle._Unpickler.load_build(self)
        self.stack.pop()
        built = _canonical_dtype(instance, state)
        if built is not instance:
            self.stack[-1] = built
            for key, value in self.memo.items():
                if value is instance:
                    self.memo[key] = built
        return None

    dispatch[pickle.BUILD[0]] = load_build


def safe_load_pickle(source, *, name: str | None = None):
    """Unpickle ``source`` (a path, or the pickle's bytes) with :class:`RestrictedUnpickler`.

    Any failure (refused name, truncated or garbage bytes) is a one-line :class:`PosekitError` that names
    ``name`` or the path.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _unpickle(io.BytesIO(source), name or "pickle data")
    return _unpickle(io.BytesIO(_read_bytes(Path(source))), name or str(source))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def _unpickle(stream, label: str):
    try:
        return RestrictedUnpickler(stream, encoding="latin1").load()
    except PosekitError as exc:
        raise PosekitError(f"{label}: {exc}") from None
    except RecursionError:
        raise PosekitError(f"{label}: pickle nested too deeply") from None
    except Exception as exc:  # untrusted bytes: every failure of the unpickler is a bad file
        raise PosekitError(f"{label}: not a readable pickle ({type(exc).__name__})") from None


def _read_member(stream, label: str):
    """One ``.npy`` file: plain arrays through numpy, object arrays through the restricted unpickler."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
        if not dtype.hasobject:
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/SyntaxError/MemoryError... on a bad header
        raise PosekitError(f"{label}: not a readable .npy array ({type(exc).__name__})") from None
    value = _unpickle(stream, label)
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape):
        raise PosekitError(f"{label}: pickled content does not match its .npy header")
    return value


def safe_load_npz(path) -> dict:
    """All arrays of an ``.npz`` (or ``.npy``) file; object arrays (pickled dicts) are unpickled safely.

    ``np.load(allow_pickle=True)`` would run any code a pickled member names; this reads each member's
    header itself and hands only object arrays to the restricted unpickler. A 0-d object array (how
    ``np.savez`` stores a dict) stays an array: call ``.item()`` on it. Members are read one at a time.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except zipfile.BadZipFile:
        with open(path, "rb") as handle:               # a plain .npy file is not a zip archive
            if handle.read(6) != b"\x93NUMPY":
                raise PosekitError(f"{path}: neither an .npz archive nor an .npy array") from None
            handle.seek(0)
            return {path.stem: _read_member(handle, str(path))}
    except Exception as exc:  # OSError, EOFError, ValueError... from a damaged zip directory
        raise PosekitError(f"{path}: not a readable .npz archive ({type(exc).__name__})") from None
    out = {}
    with archive:
        for info in archive.infolist():
            if info.filename.endswith("/"):
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            label = f"{path}[{key!r}]"
            try:
                member = archive.open(info)
            except Exception as exc:  # NotImplementedError (compression), BadZipFile (header)...
                raise PosekitError(f"{label}: damaged archive member ({type(exc).__name__})") from None
            with member:          # streamed, then drained so that the CRC is checked
                out[key] = _read_member(member, label)
                try:
                    member.read()
                except Exception as exc:  # BadZipFile (CRC), zlib.error...
                    raise PosekitError(f"{label}: damaged archive member ({type(exc).__name__})") from None
    return out


def read_json(path):
    """Parse a JSON file; missing file, bad bytes or bad syntax -> PosekitError (the one JSON file
    reader of posekit, so every command words these failures alike).

    ``NaN``/``Infinity`` literals are parsed (Python writes them); :func:`numeric` refuses them in the field
    that holds them, so the message can name it.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PosekitError(f"{path}: is a folder, expected a JSON file") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise PosekitError(f"{path}: not UTF-8 text, expected JSON") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise PosekitError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise PosekitError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def require(mapping, key: str, where: str):
    """``mapping[key]``, where ``mapping`` must be a JSON object that has ``key``."""
    if not isinstance(mapping, dict):
        raise PosekitError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    if key not in mapping:
        raise PosekitError(f"{where}: missing field {key!r}")
    return mapping[key]


def numeric(value, where: str, shape: tuple | None = None, *, finite: bool = True) -> np.ndarray:
    """A JSON number or nested list of numbers as a float array of ``shape`` (``None`` = any size).

    Strings, nulls, objects and ragged lists are refused, so a malformed field never becomes a number.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError, TypeError):
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        raise PosekitError(f"{where}: expected numbers, got {describe(value)}")
    arr = arr.astype(float)
    if shape is not None and (arr.ndim != len(shape)
                              or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True))):
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise PosekitError(f"{where}: expected shape {wanted}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise PosekitError(f"{where}: contains NaN or infinite values")
    return arr


def describe(value) -> str:
    """A short one-line rendering of a value from a file, for error messages."""
    text = " ".join(reprlib.repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------- MATLAB level-5 files
# MATLAB "MAT-File Format" (level 5): storage types of data elements and the array classes read here.
_MAT_STORAGE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MAT_TEXT = {16: "utf-8", 17: "utf-16", 18: "utf-32"}
_MAT_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_CELL, _MX_CHAR = 1, 4
_MI_INT8, _MI_UINT8, _MI_UTF8, _MI_MATRIX, _MI_COMPRESSED = 1, 2, 16, 14, 15
_MAT_UNSUPPORTED = {2: "struct", 3: "object", 5: "sparse", 16: "function", 17: "opaque"}
_MAT_HEADER = 128
_MAT_MAX_DEPTH = 32


class _MatElements:
    """Sequential reader of the data elements in one buffer, with every size checked against the buffer."""

    def __init__(self, buf: bytes, endian: str, label: str, padded: bool):
        self.buf, self.endian, self.label, self.padded, self.pos = buf, endian, label, padded, 0

    def fail(self, why: str):
        raise PosekitError(f"{self.label}: damaged or unsupported MATLAB file ({why})")

    def done(self) -> bool:
        return self.pos >= len(self.buf)

    def next(self) -> tuple[int, bytes]:
        """(storage type, data bytes) of the next element."""
        if len(self.buf) - self.pos < 8:
            self.fail("truncated element")
        first, second = struct.unpack_from(self.endian + "II", self.buf, self.pos)
        if first >> 16:                                  # small element: type and size share 4 bytes
            mdtype, nbytes, start, end = first & 0xFFFF, first >> 16, self.pos + 4, self.pos + 8
            if nbytes > 4:
                self.fail("small element longer than 4 bytes")
        else:
            mdtype, nbytes, start = first, second, self.pos + 8
            end = start + nbytes + ((-nbytes % 8) if self.padded else 0)
        if start + nbytes > len(self.buf):
            self.fail("element overruns its container")
        self.pos = end
        return mdtype, self.buf[start:start + nbytes]

    def numbers(self, what: str) -> np.ndarray:
        mdtype, data = self.next()
        if mdtype not in _MAT_STORAGE:
            self.fail(f"{what} stored as type {mdtype}")
        dtype = np.dtype(_MAT_STORAGE[mdtype]).newbyteorder(self.endian)
        if len(data) % dtype.itemsize:
            self.fail(f"{what} is not a whole number of values")
        return np.frombuffer(data, dtype=dtype)


def _mat_matrix(data: bytes, endian: str, label: str, depth: int):
    """(name, value) of one miMATRIX element: numeric/logical/char arrays and cell arrays."""
    if depth > _MAT_MAX_DEPTH:
        raise PosekitError(f"{label}: MATLAB cell arrays nested too deeply")
    items = _MatElements(data, endian, label, padded=True)
    flags = items.numbers("array flags")
    dims = items.numbers("dimensions")
    if (len(flags) != 2 or flags.dtype.kind not in "iu" or dims.dtype.kind not in "iu"
            or not 1 <= len(dims) <= 32 or np.any(dims < 0)):
        items.fail("bad array header")
    mdtype, raw_name = items.next()
    if mdtype not in (_MI_INT8, _MI_UINT8, _MI_UTF8):
        items.fail(f"array name stored as type {mdtype}")
    name = raw_name.decode("latin1")
    mx_class, is_complex, is_logical = int(flags[0]) & 0xFF, bool(flags[0] & 0x800), bool(flags[0] & 0x200)
    shape = tuple(int(d) for d in dims)
    count = int(np.prod(shape, dtype=object))
    if mx_class in _MAT_UNSUPPORTED:
        items.fail(f"variable {name!r} is a MATLAB {_MAT_UNSUPPORTED[mx_class]}")
    if mx_class == _MX_CELL:
        if count > len(data) // 8:
            items.fail(f"cell array {name!r} claims {count} cells")
        cells = np.empty(count, dtype=object)
        for i in range(count):
            mdtype, cell = items.next()
            if mdtype != _MI_MATRIX:
                items.fail(f"cell {i} of {name!r} is not a matrix")
            cells[i] = _mat_matrix(cell, endian, label, depth + 1)[1] if cell else np.zeros((0, 0))
        return name, cells.reshape(shape, order="F")
    if mx_class == _MX_CHAR:
        mdtype, chars = items.next()
        if mdtype in _MAT_TEXT:
            codec = _MAT_TEXT[mdtype] + ("" if mdtype == 16 else "-le" if endian == "<" else "-be")
            try:
                text = chars.decode(codec)
            except UnicodeDecodeError:
                items.fail(f"text of {name!r} is not valid {_MAT_TEXT[mdtype]}")
            codes = np.array([ord(c) for c in text], dtype=np.uint32)
        elif mdtype in _MAT_STORAGE:
            codes = np.frombuffer(chars, np.dtype(_MAT_STORAGE[mdtype]).newbyteorder(endian))
        else:
            items.fail(f"text of {name!r} stored as type {mdtype}")
        if codes.size != count or len(shape) != 2 or np.any(codes > 0x10FFFF) or np.any(codes < 0):
            items.fail(f"text of {name!r} does not fill its {shape} dimensions")
        grid = codes.reshape(shape, order="F")
        return name, np.array(["".join(map(chr, row)) for row in grid], dtype=str)
    if mx_class not in _MAT_CLASSES:
        items.fail(f"variable {name!r} has unknown MATLAB class {mx_class}")
    parts = [items.numbers(f"values of {name!r}")] + ([items.numbers(f"imaginary part of {name!r}")]
                                                      if is_complex else [])
    if any(part.size != count for part in parts):
        items.fail(f"{name!r} holds {parts[0].size} values for dimensions {shape}")
    value = parts[0].astype(_MAT_CLASSES[mx_class])
    if is_complex:
        value = value + 1j * parts[1].astype(_MAT_CLASSES[mx_class])
    elif is_logical:
        value = value != 0
    return name, value.reshape(shape, order="F")


def read_mat(path) -> dict:
    """Variables of a MATLAB level-5 (v6/v7) file: numeric, logical and char arrays, and cell arrays of them.

    A small reader of its own rather than ``scipy.io.loadmat``: scipy's compiled reader crashes the process
    on some damaged files (an out-of-range type code in an element tag). Cells come back as object arrays
    and char arrays as arrays of row strings, shaped as in MATLAB. Structs, objects, sparse matrices and
    v7.3 (HDF5) files are refused with a PosekitError.
    """
    path = Path(path)
    raw = _read_bytes(path)
    indicator = raw[_MAT_HEADER - 2:_MAT_HEADER]
    if len(raw) < _MAT_HEADER or indicator not in (b"IM", b"MI"):
        raise PosekitError(f"{path}: not a MATLAB 5 (v6/v7) .mat file")
    endian = "<" if indicator == b"IM" else ">"
    (version,) = struct.unpack_from(endian + "H", raw, _MAT_HEADER - 4)
    if version != 0x0100:
        raise PosekitError(f"{path}: MATLAB file version {version:#06x} is not supported "
                           f"(save it with -v7 or earlier, not -v7.3)")
    variables = {}
    top = _MatElements(raw[_MAT_HEADER:], endian, str(path), padded=False)
    while not top.done():
        mdtype, data = top.next()
        if mdtype == _MI_COMPRESSED:
            try:
                data = zlib.decompress(data)
            except zlib.error:
                top.fail("bad compressed data")
            inner = _MatElements(data, endian, str(path), padded=False)
            mdtype, data = inner.next()
        if mdtype != _MI_MATRIX:
            top.fail(f"top-level element of type {mdtype}")
        if data:
            name, value = _mat_matrix(data, endian, str(path), depth=0)
            if name:
                variables[name] = value
    return variables


__all__ = ["RestrictedUnpickler", "safe_load_pickle", "safe_load_npz", "read_json", "require", "numeric", "describe",
           "read_mat"]
