"""Ray-cast rasteriser: round cones (capsules), ellipsoids and boxes with a per-pixel depth test.

Every primitive is intersected exactly with the camera ray of each pixel inside its image bounding box,
so overlaps and self-occlusion are resolved per pixel, not per primitive. Rays start at the camera
centre (camera coordinates, ``Xc = R X + t``) and go through pixel centres at integer coordinates (the
OpenCV convention of :class:`posekit.geometry.Camera`); a ray is written ``d = (x, y, 1)`` with ``(x, y)``
the normalised image coordinates, so the ray parameter of a hit IS its camera depth ``Zc``.

Buffers (``height x width``): ``depth`` (camera z in the unit of the primitives, ``inf`` where empty),
``ids`` (the surface index given with each primitive, ``-1`` where empty) and ``normal`` (unit outward
normal in camera coordinates). Lenses are pinhole only: a camera with distortion is refused.

Primitives (all coordinates in camera space):

* round cone ``a, b, r1, r2``: the convex hull of the spheres ``(a, r1)`` and ``(b, r2)``; ``r1 == r2``
  is a capsule. Its side is the cone tangent to both spheres (half-angle ``phi``, ``sin phi =
  (r1 - r2) / |b - a|``), valid between the tangent circles; a ray enters the hull through that side or
  through one of the spheres, so the hit is the nearest of the three.
* ellipsoid ``center, axes`` (columns: unit axis directions), ``radii``.
* box ``center, axes, half`` (half side lengths along the axes).
"""
from __future__ import annotations

import cv2
import numpy as np

from posekit.errors import PosekitError

_NEAR = 1e-6


class Raster:
    """Depth, surface-id and normal buffers of one camera.

    Queue primitives with :meth:`round_cone`, :meth:`ellipsoid` and :meth:`box`, then :meth:`draw` them
    all at once: the ray tests of every (primitive, pixel in its bounding box) pair run as one batch of
    array operations, and each pixel keeps its nearest hit.
    """

    def __init__(self, K, width: int, height: int, dist=None):
        K = np.asarray(K, dtype=float)
        if dist is not None and np.any(np.asarray(dist, dtype=float) != 0):
            raise PosekitError("synthetic renderer: only pinhole cameras (no lens distortion) are rendered")
        if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise PosekitError(f"synthetic renderer: K must be a 3x3 intrinsic matrix, got {K.tolist()}")
        self.width, self.height = int(width), int(height)
        self.fx, self.fy, self.skew = float(K[0, 0]), float(K[1, 1]), float(K[0, 1])
        self.cx, self.cy = float(K[0, 2]), float(K[1, 2])
        self.depth = np.full((self.height, self.width), np.inf)
        self.ids = np.full((self.height, self.width), -1, dtype=np.int32)
        self.normal = np.zeros((self.height, self.width, 3))
        self._cones: list = []
        self._ellipsoids: list = []
        self._boxes: list = []

    # ------------------------------------------------------------------------------- primitives

    def round_cones(self, a, b, r1, r2, ids) -> None:
        """Queue round cones: ends a, b (N, 3), radii r1, r2 (N,), surface ids (N,)."""
        a, b = np.asarray(a, dtype=float).reshape(-1, 3), np.asarray(b, dtype=float).reshape(-1, 3)
        r1 = np.broadcast_to(np.asarray(r1, dtype=float), len(a))
        r2 = np.broadcast_to(np.asarray(r2, dtype=float), len(a))
        ids = np.broadcast_to(np.asarray(ids, dtype=np.int64), len(a))
        nested = np.linalg.norm(b - a, axis=1) <= np.abs(r1 - r2)     # one sphere holds the other
        if nested.any():
            big = np.where(r1 >= r2, r1, r2)[nested]
            center = np.where((r1 >= r2)[:, None], a, b)[nested]
            self.ellipsoids(center, np.broadcast_to(np.eye(3), (len(big), 3, 3)),
                            np.repeat(big[:, None], 3, axis=1), ids[nested])
        keep = ~nested
        self._cones.append((a[keep], b[keep], r1[keep], r2[keep], ids[keep]))

    def round_cone(self, a, b, r1: float, r2: float, ident: int) -> None:
        self.round_cones([a], [b], [r1], [r2], [ident])

    def ellipsoids(self, centers, axes, radii, ids) -> None:
        """Queue ellipsoids: centres (N, 3), axes (N, 3, 3) (columns), half-axes (N, 3), ids (N,)."""
        centers = np.asarray(centers, dtype=float).reshape(-1, 3)
        self._ellipsoids.append((centers, np.asarray(axes, dtype=float).reshape(-1, 3, 3),
                                 np.asarray(radii, dtype=float).reshape(-1, 3),
                                 np.broadcast_to(np.asarray(ids, dtype=np.int64), len(centers))))

    def ellipsoid(self, center, axes, radii, ident: int) -> None:
        self.ellipsoids([center], [axes], [radii], [ident])

    def boxes(self, centers, axes, half, ids) -> None:
        """Queue boxes: centres (N, 3), axes (N, 3, 3) (columns), half sizes (N, 3), ids (N,)."""
        centers = np.asarray(centers, dtype=float).reshape(-1, 3)
        self._boxes.append((centers, np.asarray(axes, dtype=float).reshape(-1, 3, 3),
                            np.asarray(half, dtype=float).reshape(-1, 3),
                            np.broadcast_to(np.asarray(ids, dtype=np.int64), len(centers))))

    def box(self, center, axes, half, ident: int) -> None:
        self.boxes([center], [axes], [half], [ident])

    # ------------------------------------------------------------------------------- drawing

    def draw(self) -> "Raster":
        """Ray-test the queued primitives against the buffers (nearest hit per pixel wins)."""
        batches = []
        for queued, hits in ((self._cones, self._cone_hits), (self._ellipsoids, self._ellipsoid_hits),
                             (self._boxes, self._box_hits)):
            if queued:
                arrays = [np.concatenate(parts) for parts in zip(*queued)]
                if len(arrays[0]):
                    batches.append(hits(*arrays))
        self._cones, self._ellipsoids, self._boxes = [], [], []
        batches = [b for b in batches if b[0].size]
        if not batches:
            return self
        pixel = np.concatenate([b[0] for b in batches])
        t = np.concatenate([b[1] for b in batches])
        depth = self.depth.reshape(-1)
        np.minimum.at(depth, pixel, t)
        ids, normal = self.ids.reshape(-1), self.normal.reshape(-1, 3)
        for pix, tb, ident, normal_fn in batches:
            win = tb <= depth[pix]
            ids[pix[win]] = ident[win]
            normal[pix[win]] = normal_fn(win)
        return self

    def _sphere_boxes(self, centers, radii):
        """Pixel bounds (v0, v1, u0, u1) that spheres (S, 3), (S,) can cover, as int arrays; spheres behind
        the camera get an empty range, spheres reaching the camera plane the whole image."""
        x, y, z = centers[:, 0], centers[:, 1], centers[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            def extent(lateral):
                rho = np.hypot(lateral, z)
                alpha = np.arctan2(lateral, z)
                beta = np.arcsin(np.minimum(1.0, radii / rho))
                lo, hi = alpha - beta, alpha + beta
                bounded = (lo > -np.pi / 2 + 1e-9) & (hi < np.pi / 2 - 1e-9)
                return np.where(bounded, np.tan(lo), -np.inf), np.where(bounded, np.tan(hi), np.inf)

            xlo, xhi = extent(x)
            ylo, yhi = extent(y)
            skew_lo = np.minimum(self.skew * ylo, self.skew * yhi) if self.skew else 0.0
            skew_hi = np.maximum(self.skew * ylo, self.skew * yhi) if self.skew else 0.0
            ulo, uhi = self.fx * xlo + skew_lo + self.cx, self.fx * xhi + skew_hi + self.cx
            vlo, vhi = self.fy * ylo + self.cy, self.fy * yhi + self.cy
        near = z - radii <= _NEAR                                   # reaches the camera plane
        behind = z + radii <= _NEAR
        def first(low, size):          # first pixel a bound can reach (NaN: from the image edge)
            return np.clip(np.floor(np.where(np.isnan(low), 0, low)), 0, size)

        def last(high, size):          # one past the last pixel
            return np.clip(np.floor(np.where(np.isnan(high), size, high)) + 1, 0, size)

        v0, u0 = np.where(near, 0, first(vlo, self.height)), np.where(near, 0, first(ulo, self.width))
        v1 = np.where(near, self.height, last(vhi, self.height))
        u1 = np.where(near, self.width, last(uhi, self.width))
        v0, v1 = np.where(behind, self.height, v0), np.where(behind, 0, v1)       # inverted: empty
        u0, u1 = np.where(behind, self.width, u0), np.where(behind, 0, u1)
        return v0.astype(np.int64), v1.astype(np.int64), u0.astype(np.int64), u1.astype(np.int64)

    def _pixels(self, v0, v1, u0, u1):
        """Every (primitive, pixel) pair of the boxes: primitive index, flat pixel index, ray x, ray y."""
        rows, cols = np.maximum(v1 - v0, 0), np.maximum(u1 - u0, 0)
        counts = rows * cols
        prim = np.repeat(np.arange(len(counts)), counts)
        offset = np.arange(prim.size) - np.repeat(np.cumsum(counts) - counts, counts)
        width = np.maximum(cols, 1)[prim]
        row = v0[prim] + offset // width
        col = u0[prim] + offset % width
        ray_y = (row - self.cy) / self.fy
        ray_x = (col - self.cx - self.skew * ray_y) / self.fx
        return prim, row * self.width + col, ray_x, ray_y

    def _cone_hits(self, a, b, r1, r2, ident):
        box_a, box_b = self._sphere_boxes(a, r1), self._sphere_boxes(b, r2)
        prim, pixel, x, y = self._pixels(np.minimum(box_a[0], box_b[0]), np.maximum(box_a[1], box_b[1]),
                                         np.minimum(box_a[2], box_b[2]), np.maximum(box_a[3], box_b[3]))
        axis = b - a
        length = np.linalg.norm(axis, axis=1)
        u = axis / length[:, None]
        sin_phi = (r1 - r2) / length
        cos2 = 1.0 - sin_phi ** 2
        au, aa, bb = np.sum(a * u, axis=1), np.sum(a * a, axis=1), np.sum(b * b, axis=1)
        m = r1 + au * sin_phi
        g = lambda values: values[prim]  # noqa: E731 - per-pair gather
        ux, uy, uz = g(u[:, 0]), g(u[:, 1]), g(u[:, 2])
        dd = x * x + y * y + 1.0
        du = x * ux + y * uy + uz
        da = x * g(a[:, 0]) + y * g(a[:, 1]) + g(a[:, 2])
        db = x * g(b[:, 0]) + y * g(b[:, 1]) + g(b[:, 2])
        s_phi, c2, au_p, m_p = g(sin_phi), g(cos2), g(au), g(m)
        n = du * s_phi
        qa = c2 * (dd - du * du) - n * n
        qb = c2 * (da - du * au_p) - m_p * n
        qc = g(cos2 * (aa - au * au) - m * m)
        r1_p, r2_p, len_p = g(r1), g(r2), g(length)
        with np.errstate(invalid="ignore", divide="ignore"):
            root = np.sqrt(qb * qb - qa * qc)
            s_lo, s_hi = r1_p * s_phi, len_p + r2_p * s_phi
            t = np.full(prim.size, np.inf)
            for cand in ((qb - root) / qa, (qb + root) / qa):
                s = cand * du - au_p
                t = np.where((cand > _NEAR) & (s >= s_lo) & (s <= s_hi) & (cand < t), cand, t)
            for dc, cc, r in ((da, g(aa), r1_p), (db, g(bb), r2_p)):
                cand = (dc - np.sqrt(dc * dc - dd * (cc - r * r))) / dd
                t = np.where((cand > _NEAR) & (cand < t), cand, t)
        hit = np.isfinite(t)
        prim, pixel, x, y, t = prim[hit], pixel[hit], x[hit], y[hit], t[hit]

        def normals(win):
            pw, tw = prim[win], t[win]
            point = np.stack([x[win] * tw, y[win] * tw, tw], axis=1)
            along = np.clip(np.sum((point - a[pw]) * u[pw], axis=1), 0.0, length[pw])
            out = point - (a[pw] + along[:, None] * u[pw])
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

        return pixel, t, ident[prim], normals

    def _ellipsoid_hits(self, center, axes, radii, ident):
        prim, pixel, x, y = self._pixels(*self._sphere_boxes(center, radii.max(axis=1)))
        to_unit = np.swapaxes(axes, 1, 2) / radii[:, :, None]        # world -> unit-sphere coordinates
        c = np.einsum("pij,pj->pi", to_unit, center)
        m = to_unit[prim]
        dx = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2]
        dy = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]
        dz = m[:, 2, 0] * x + m[:, 2, 1] * y + m[:, 2, 2]
        cp = c[prim]
        qa = dx * dx + dy * dy + dz * dz
        qb = dx * cp[:, 0] + dy * cp[:, 1] + dz * cp[:, 2]
        qc = np.sum(c * c, axis=1)[prim] - 1.0
        with np.errstate(invalid="ignore"):
            t = (qb - np.sqrt(qb * qb - qa * qc)) / qa
        hit = t > _NEAR
        prim, pixel, t = prim[hit], pixel[hit], t[hit]
        local = np.stack([dx[hit], dy[hit], dz[hit]], axis=1) * t[:, None] - cp[hit]

        def normals(win):
            pw = prim[win]
            out = np.einsum("pij,pj->pi", axes[pw], local[win] / radii[pw])
            return out / np.linalg.norm(out, axis=1, keepdims=True)

        return pixel, t, ident[prim], normals

    def _box_hits(self, center, axes, half, ident):
        prim, pixel, x, y = self._pixels(*self._sphere_boxes(center, np.linalg.norm(half, axis=1)))
        origin = -np.einsum("pji,pj->pi", axes, center)                # camera centre in box coordinates
        near, far = np.full(prim.size, -np.inf), np.full(prim.size, np.inf)
        face = np.zeros(prim.size, dtype=np.int64)
        directions = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(3):
                ax = axes[prim, :, i]
                direction = ax[:, 0] * x + ax[:, 1] * y + ax[:, 2]
                t1 = (-half[prim, i] - origin[prim, i]) / direction
                t2 = (half[prim, i] - origin[prim, i]) / direction
                enter, leave = np.minimum(t1, t2), np.maximum(t1, t2)
                face = np.where(enter > near, i, face)
                near, far = np.maximum(near, enter), np.minimum(far, leave)
                directions.append(direction)
        hit = (near <= far) & (near > _NEAR)
        prim, pixel, t, face = prim[hit], pixel[hit], near[hit], face[hit]
        along_face = np.stack(directions, axis=1)[hit]

        def normals(win):
            pw, fw = prim[win], face[win]
            sign = -np.sign(along_face[win][np.arange(fw.size), fw])
            return sign[:, None] * axes[pw, :, fw]

        return pixel, t, ident[prim], normals


# ----------------------------------------------------------------------------------- shading

def lambert(raster: Raster, light, ambient: float):
    """Lambert shading factor of the filled pixels: ``ambient + (1 - ambient) max(0, n . light)``.

    light: unit vector towards the light, camera coordinates. Returns (foreground mask (H, W), surface
    ids (N,), factors (N,)) for the N filled pixels in row-major order.
    """
    mask = raster.ids >= 0
    lit = np.clip(raster.normal[mask] @ np.asarray(light, dtype=float), 0.0, 1.0)
    return mask, raster.ids[mask], ambient + (1.0 - ambient) * lit


def keypoint_visibility(raster: Raster, pixels, depths, own_ids, tolerances) -> np.ndarray:
    """COCO flags (0 outside the image or behind the camera, 1 occluded, 2 visible) from the buffers.

    pixels (K, 2) projected keypoints; depths (K,) their camera z; own_ids: per keypoint, the surface ids
    it belongs to (empty for a point on a surface); tolerances (K,). A keypoint inside the image is
    visible when the surface seen at its pixel (the pixel whose centre is nearest) is one of its own, or
    lies no more than its tolerance in front of it.
    """
    uv = np.asarray(pixels, dtype=float)
    z = np.asarray(depths, dtype=float)
    flags = np.zeros(len(uv), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        col, row = np.round(uv[:, 0]), np.round(uv[:, 1])
        inside = (np.isfinite(uv).all(axis=1) & (z > 0) & (col >= 0) & (col < raster.width)
                  & (row >= 0) & (row < raster.height))
    for k in np.flatnonzero(inside):
        r, c = int(row[k]), int(col[k])
        seen, nearest = raster.ids[r, c], raster.depth[r, c]
        own = seen >= 0 and seen in own_ids[k]
        flags[k] = 2 if own or nearest >= z[k] - tolerances[k] else 1
    return flags


# ------------------------------------------------------------------------------- backgrounds

def value_noise(rng: np.random.Generator, height: int, width: int, cells: int, channels: int = 1):
    """Smooth random field in [0, 1]: a ``cells x cells`` grid of random values, bicubically upsampled."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(height, width, channels), 0.0, 1.0)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random colours (count, 3) in [0, 1], from HSV with moderate saturation."""
    hsv = np.stack([rng.random(count) * 180, 40 + rng.random(count) * 160,
                    60 + rng.random(count) * 190], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255.0


def _colour_ramp(colours: np.ndarray) -> np.ndarray:
    """A 256-entry (256, 3) float32 table through the given colours, evenly spaced."""
    positions = np.linspace(0, 255, len(colours))
    index = np.arange(256)
    return np.stack([np.interp(index, positions, colours[:, c]) for c in range(3)], axis=1).astype(np.float32)


def _noise_background(rng, height, width):
    weights = rng.dirichlet(np.ones(3)).astype(np.float32)
    grids = [rng.random((cells, cells), dtype=np.float32) for cells in (3, 9, 33)]
    field = sum(w * cv2.resize(g, (width, height), interpolation=cv2.INTER_CUBIC) for w, g in zip(weights, grids))
    field = cv2.normalize(field, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return _colour_ramp(_palette(rng, 3))[field]


def _clutter_background(rng, height, width):
    base = _palette(rng, 2)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = base[0] * (1 - ramp) + base[1] * ramp
    image = np.ascontiguousarray(np.broadcast_to(image, (height, width, 3)))
    for _ in range(int(rng.integers(4, 14))):
        colour = tuple(float(c) for c in _palette(rng, 1)[0])
        kind = rng.integers(3)
        x, y = (int(v) for v in rng.integers(0, (width, height)))
        size = int(rng.integers(max(4, width // 16), max(6, width // 2)))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, lineType=cv2.LINE_AA)
        else:
            pts = rng.integers(-size, size, (int(rng.integers(3, 7)), 2)) + (x, y)
            cv2.fillPoly(image, [pts.astype(np.int32)], colour, lineType=cv2.LINE_AA)
    return image


def _tiles_background(rng, height, width):
    period = int(rng.integers(8, 40))
    yy, xx = np.mgrid[0:height, 0:width]
    if rng.random() < 0.5:
        pattern = ((xx // period + yy // period) % 2).astype(np.float32)
    else:
        pattern = ((xx // period) % 2).astype(np.float32)
    colours = _palette(rng, 2)
    image = colours[0] + (colours[1] - colours[0]) * pattern[..., None]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    jitter = (rng.random((4, 2)) - 0.5) * np.float32([width, height]) * 0.6
    warp = cv2.getPerspectiveTransform(corners, (corners + jitter).astype(np.float32))
    return cv2.warpPerspective(image, warp, (width, height), borderMode=cv2.BORDER_REFLECT)


_PHOTO_NAMES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "coins", "clock",
                "hubble_deep_field", "immunohistochemistry", "page", "text")
_PHOTOS: list | None = None


def _photos() -> list:
    """scikit-image's bundled photos without people in them (empty when scikit-image is absent)."""
    global _PHOTOS
    if _PHOTOS is None:
        try:
            from skimage import data as skdata
        except ImportError:
            _PHOTOS = []
            return _PHOTOS
        photos = []
        for name in _PHOTO_NAMES:
            try:
                image = np.asarray(getattr(skdata, name)())
            except Exception:  # noqa: BLE001 - a photo scikit-image cannot provide offline is skipped
                continue
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            photos.append(np.ascontiguousarray(image[..., :3]).astype(np.float32) / 255.0)
        _PHOTOS = photos
    return _PHOTOS


def _photo_background(rng, height, width):
    photos = _photos()
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    scale = max(height / ph, width / pw) * rng.uniform(1.0, 2.0)
    resized = cv2.resize(photo, (max(width, int(pw * scale + 0.5)), max(height, int(ph * scale + 0.5))),
                         interpolation=cv2.INTER_LINEAR)
    y = int(rng.integers(resized.shape[0] - height + 1))
    x = int(rng.integers(resized.shape[1] - width + 1))
    crop = resized[y:y + height, x:x + width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    return np.clip(crop * gain, 0, 1)


BACKGROUND_KINDS = ("noise", "clutter", "tiles", "photo")


def make_background(rng: np.random.Generator, height: int, width: int, kind: str | None = None):
    """A random (H, W, 3) float32 background in [0, 1]: value noise, drawn clutter, perspective tiles,
    or a crop of one of scikit-image's photos (when scikit-image is importable)."""
    kinds = [k for k in BACKGROUND_KINDS if k != "photo" or _photos()]
    if kind is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    if kind not in kinds:
        raise PosekitError(f"background kind {kind!r} is not available; choose from {', '.join(kinds)}")
    maker = {"noise": _noise_background, "clutter": _clutter_background, "tiles": _tiles_background,
             "photo": _photo_background}[kind]
    return np.ascontiguousarray(maker(rng, height, width), dtype=np.float32)
