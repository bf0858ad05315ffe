"""Files of the synthetic engine, written so that equal content gives equal bytes."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError

IMAGE_FORMATS = ("jpg", "png")
JPEG_QUALITY = 95


def encode_image(rgb: np.ndarray, image_format: str = "jpg") -> bytes:
    """RGB uint8 image -> JPEG (quality 95) or PNG bytes."""
    if image_format not in IMAGE_FORMATS:
        raise PosekitError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    bgr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == "jpg" else []
    ok, data = cv2.imencode(f".{image_format}", np.ascontiguousarray(bgr), params)
    if not ok:
        raise PosekitError(f"cannot encode a {rgb.shape} image as {image_format}")
    return data.tobytes()


def write(path: Path, data: bytes | str) -> None:
    """Write text (UTF-8) or bytes, creating the folders; a failure is a PosekitError naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


def write_npz(path, **arrays) -> Path:
    """An ``.npz`` archive (readable by ``numpy.load``) with fixed zip timestamps, so equal arrays give
    equal bytes. Arrays must not need pickling (numbers, booleans, fixed-width strings)."""
    path = Path(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in arrays:
            array = np.asarray(arrays[name])
            if array.dtype.hasobject:
                raise PosekitError(f"{path}: array {name!r} holds Python objects; store numbers or strings")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            data = io.BytesIO()
            np.lib.format.write_array(data, array, allow_pickle=False)
            archive.writestr(info, data.getvalue())
    write(path, buffer.getvalue())
    return path


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a binary mask: ``{"size": [h, w], "counts": [...]}``, runs in
    column-major order starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}
