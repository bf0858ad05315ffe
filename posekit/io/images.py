"""Reading and writing images: every photo a user has becomes an upright RGB uint8 array, or one error.

:func:`load_image` decodes with OpenCV from the file's bytes (so any path name works) and returns
``H x W x 3`` RGB uint8:

* EXIF orientation is applied (OpenCV does so for JPEG, PNG and WebP unless told not to), so a phone
  photo taken upright comes out upright.
* Grayscale is repeated into three channels; an alpha channel is ignored (the colour stored under
  transparent pixels is used, as OpenCV and the usual pose tools read such files).
* 16-bit images are scaled to 8 bits by ``round(v / 257)`` (65535 -> 255); floating-point images
  (TIFF, HDR) are taken as intensities in [0, 1] and clipped.
* A missing file, a folder, an empty, truncated or corrupt file and anything that is not an image
  raise :class:`PosekitError` naming the file.

A JPEG is checked for its end-of-image marker before decoding: some OpenCV builds decode a
truncated JPEG into a half-grey picture with only a warning.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm")
_JPEG_SOI = b"\xff\xd8"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PosekitError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise PosekitError(f"{path}: permission denied") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG stream reaches its end-of-image marker (trailing bytes after it are allowed).

    Walks the marker segments; inside a scan, 0xFF is followed by 0x00 (a stuffed byte), a restart
    marker or a fill byte, anything else ends the scan. A stream that is not laid out as markers is
    left to the decoder to judge (True).
    """
    n, pos = len(data), 2
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF:                         # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:                         # end of image
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > n:
            return False
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker != 0xDA:                         # not a scan: the segment length was all
            continue
        while True:                                # entropy-coded data up to the next marker
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return False
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
            elif following == 0xFF:
                pos += 1
            else:
                break
    return False


def _to_uint8(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if image.dtype.kind == "f":
        return np.round(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    raise PosekitError(f"{name}: unsupported pixel type {image.dtype} (expected 8-bit, 16-bit or float)")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) into an upright RGB uint8 array; see the module
    docstring. ``name`` is used in error messages."""
    if len(data) == 0:
        raise PosekitError(f"{name}: empty file")
    if data[:2] == _JPEG_SOI and not jpeg_is_complete(data):
        raise PosekitError(f"{name}: truncated JPEG (the file ends before the end-of-image marker)")
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:
        lines = [line for line in str(exc).splitlines() if "error:" in line]
        reason = lines[-1].split("error:", 1)[1].strip() if lines else "decoder error"
        raise PosekitError(f"{name}: cannot decode the image ({reason})") from None
    if decoded is None or decoded.size == 0:
        raise PosekitError(f"{name}: not a readable image (unknown format, or a corrupt or truncated file)")
    image = _to_uint8(decoded, name)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)      # in place: a 48-megapixel photo is 137 MiB


def load_image(path) -> np.ndarray:
    """An image file as an upright ``H x W x 3`` RGB uint8 array (see the module docstring)."""
    if not isinstance(path, (str, Path)):
        raise PosekitError(f"load_image: expected a file path, got {type(path).__name__}")
    path = Path(path)
    return decode_image(_read_bytes(path), str(path))


def save_image(path, image_rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image; the format follows the extension (.png, .jpg, ...)."""
    path = Path(path)
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PosekitError(f"{path}: can only write H x W x 3 uint8 RGB images, got {image.dtype} {image.shape}")
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise PosekitError(f"{path}: cannot encode an image with extension {path.suffix!r}")
    try:
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return path


def collect_images(inputs) -> list[Path]:
    """The image files named by ``inputs``: files as given (in order, checked when loaded), folders
    expanded to their image files (by extension, sorted by name, not recursive).

    A folder without image files is an error; so is an empty list.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise PosekitError("no images given")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise PosekitError(f"{path}: folder holds no image files "
                                   f"({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        else:
            files.append(path)
    return files


__all__ = ["load_image", "decode_image", "save_image", "collect_images", "jpeg_is_complete",
           "IMAGE_EXTENSIONS"]
