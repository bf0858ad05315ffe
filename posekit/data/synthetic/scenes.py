"""Scenes: posed people, props and occluders in a Y-up world (millimetres), seen by pinhole cameras.

A :class:`Person` is a ``cmu_mocap`` pose with a body build and clothing; :func:`render_view` draws
people and solids through a camera into an image (background, Lambert light, hair and eyes on the
heads, texture, blur, noise) and returns the buffers; :func:`annotate_person` reads exact keypoints,
visibility (:func:`~posekit.data.synthetic.render.keypoint_visibility`), box and mask from them.

Surface ids: person ``i`` part ``p`` is ``i * len(PARTS) + p``; solids follow the people.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from posekit.data.structures import Motion
from posekit.data.synthetic.body import (HEAD_LANDMARK_DIRECTIONS, PARTS, Body, BodyShape,
                                         body_keypoints, build_body, keypoint_recipes, keypoint_tolerances,
                                         sample_shape, surface_normal_in_frame)
from posekit.data.synthetic.motion import (ROOT, UP, apply_variation, bone_lengths, mirror, rotate_about_vertical,
                                           sample_bone_scales, sample_variation)
from posekit.data.synthetic.postures import POSTURES, classify_posture, neutral_pose, sample_posture
from posekit.data.synthetic.render import Raster, keypoint_visibility, lambert, value_noise
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import get_skeleton

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 125], [198, 134, 90],
                       [160, 105, 70], [110, 70, 45], [80, 50, 35]]) / 255.0
HAIR_COLOURS = np.array([[25, 20, 18], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 150, 150],
                         [130, 60, 30]]) / 255.0
TROUSER_COLOURS = np.array([[40, 55, 90], [30, 30, 35], [90, 90, 95], [170, 150, 110], [60, 70, 50],
                            [120, 30, 40]]) / 255.0
EYE_COLOUR = np.array([0.08, 0.06, 0.05])
EYE_SIZE_DEG = 9.0
SURFACE_PIXEL_SLACK = 2.0
"""Surface landmarks get this many pixel footprints (depth / focal length) of extra depth tolerance: a
surface seen edge-on changes depth fast across the one pixel the test reads."""


def rng_for(seed: int, *index: int) -> np.random.Generator:
    """The generator of one item (image, sequence, group...): independent of how many are made."""
    return np.random.default_rng([int(seed), *map(int, index)])


# ----------------------------------------------------------------------------------- people

@dataclass
class Appearance:
    """Clothing and colouring: albedo (len(PARTS), 3) in [0, 1]; hair colour and style (0 none,
    1 short, 2 long)."""

    albedo: np.ndarray
    hair: np.ndarray
    hair_style: int


def _hsv(rng, hue=(0, 180), sat=(40, 220), val=(50, 240)) -> np.ndarray:
    pixel = np.array([[[rng.uniform(*hue), rng.uniform(*sat), rng.uniform(*val)]]], dtype=np.float32)
    return cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(float) / 255.0


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Skin tone, shirt (short, long or no sleeves), trousers or shorts, shoes, hair."""
    skin = np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.06, 3), 0, 1)
    shirt = _hsv(rng)
    trousers = np.clip(TROUSER_COLOURS[rng.integers(len(TROUSER_COLOURS))] * rng.uniform(0.8, 1.2, 3), 0, 1) \
        if rng.random() < 0.7 else _hsv(rng, val=(40, 200))
    shoes = _hsv(rng, sat=(0, 120), val=(20, 120))
    sleeves = rng.choice(3, p=[0.4, 0.45, 0.15])        # 0 short, 1 long, 2 none
    long_legs = rng.random() < 0.75
    colours = {"head": skin, "neck": skin, "chest": shirt, "abdomen": shirt, "pelvis": trousers}
    for side in ("left", "right"):
        colours[f"{side}_shoulder"] = skin if sleeves == 2 else shirt
        colours[f"{side}_upper_arm"] = skin if sleeves == 2 else shirt
        colours[f"{side}_forearm"] = shirt if sleeves == 1 else skin
        colours[f"{side}_hand"] = skin
        colours[f"{side}_thigh"] = trousers
        colours[f"{side}_shank"] = trousers if long_legs else skin
        colours[f"{side}_foot"] = shoes
    albedo = np.array([colours[p] for p in PARTS])
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3), 0, 1)
    return Appearance(albedo, hair, int(rng.choice(3, p=[0.1, 0.6, 0.3])))


@dataclass
class Solid:
    """A non-person object: "box" (center, axes, half sizes), "ellipsoid" (center, axes, radii) or
    "cone" (a, b, r1, r2), with its colour."""

    kind: str
    albedo: np.ndarray
    center: np.ndarray | None = None
    axes: np.ndarray | None = None
    size: np.ndarray | None = None
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    r1: float = 0.0
    r2: float = 0.0


@dataclass
class Person:
    """One posed person: cmu_mocap joints (K, 3) world mm, body build, appearance and labels."""

    positions: np.ndarray
    shape: BodyShape
    appearance: Appearance
    posture: str
    action: str = "none"
    source: str = ""
    track_id: int = 0
    props: list = field(default_factory=list)
    body: Body | None = None

    def __post_init__(self):
        if self.body is None:
            self.body = build_body(self.positions, self.shape)


def lowest_point(body: Body) -> float:
    """Lowest height (Y) of a body's surface."""
    return min(p.lowest(UP) for p in body.primitives)


def grounded(positions, shape: BodyShape) -> np.ndarray:
    """The pose moved vertically so that its body surface touches the floor Y = 0."""
    pos = np.asarray(positions, dtype=float)
    return pos - UP * lowest_point(build_body(pos, shape))


def seat_for(body: Body, rng: np.random.Generator) -> Solid:
    """A stool under a sitting body: a box from the floor to the underside of the pelvis and thighs."""
    pelvis = body.primitives[PARTS.index("pelvis")]
    thighs = [body.primitives[PARTS.index(f"{s}_thigh")] for s in ("left", "right")]
    top = min(pelvis.lowest(UP), *(t.a[1] - t.r1 for t in thighs))
    forward = pelvis.axes[:, 2] * np.array([1.0, 0.0, 1.0])
    forward /= max(np.linalg.norm(forward), 1e-9)
    left = np.cross(UP, forward)
    center = pelvis.center * np.array([1.0, 0.0, 1.0]) - 40.0 * forward + UP * top / 2
    half = np.array([rng.uniform(200, 280), max(top / 2, 1.0), rng.uniform(170, 230)])
    colour = _hsv(rng, hue=(5, 30), sat=(60, 200), val=(60, 200))
    return Solid("box", colour, center=center, axes=np.stack([left, UP, forward], axis=1), size=half)


class PoseSource:
    """Draws poses for people: mocap frames (real motion, with variation) or posture templates.

    motions: the mocap library (may be empty: templates only); template_probability: chance of a
    template when mocap is available; postures: the template classes to draw from.
    """

    def __init__(self, motions: list[Motion] | None = None, template_probability: float = 0.3,
                 postures=POSTURES):
        self.motions = list(motions or [])
        self.template_probability = 1.0 if not self.motions else float(template_probability)
        unknown = set(postures) - set(POSTURES)
        if unknown:
            raise PosekitError(f"unknown posture(s) {sorted(unknown)}; choose from {', '.join(POSTURES)}")
        self.postures = tuple(postures)

    def person(self, rng: np.random.Generator, posture: str | None = None) -> Person:
        """A person standing at the origin (pelvis above it), facing a random direction."""
        shape = sample_shape(rng)
        appearance = sample_appearance(rng)
        if posture is not None or rng.random() < self.template_probability:
            posture = posture or self.postures[int(rng.integers(len(self.postures)))]
            lengths = _template_lengths(rng)
            positions, _ = sample_posture(posture, rng, lengths)
            if rng.random() < 0.5:
                positions = mirror(positions)
            positions = rotate_about_vertical(positions, rng.uniform(0, 2 * np.pi))
            positions = grounded(positions, shape)
            person = Person(positions, shape, appearance, posture, "none", f"template:{posture}")
            if posture == "sit":
                person.props.append(seat_for(person.body, rng))
            return person
        motion = self.motions[int(rng.integers(len(self.motions)))]
        frame = int(rng.integers(len(motion)))
        variation = sample_variation(rng)
        positions = apply_variation(motion.positions[frame], variation)
        positions = positions - np.array([1.0, 0.0, 1.0]) * positions[ROOT]
        return Person(positions, shape, appearance, classify_posture(positions),
                      motion.meta.get("action", "unknown"), f"{motion.meta.get('trial', '')}:{frame}")


def _template_lengths(rng: np.random.Generator) -> np.ndarray:
    """Bone lengths of a template person: the default lengths times :func:`sample_bone_scales`."""
    return bone_lengths(neutral_pose()) * sample_bone_scales(rng)


def place_people(people: list[Person], rng: np.random.Generator, spread: float = 1800.0,
                 min_distance: float = 800.0) -> list[Person]:
    """Move people apart on the floor: random positions within +-spread mm, pelvises at least
    ``min_distance`` apart (the first stays at the origin)."""
    spots = [np.zeros(2)]
    for _ in people[1:]:
        for _attempt in range(100):
            spot = rng.uniform(-spread, spread, 2)
            if all(np.linalg.norm(spot - s) >= min_distance for s in spots):
                break
        spots.append(spot)
    out = []
    for person, (x, z) in zip(people, spots):
        offset = np.array([x, 0.0, z])
        body = _moved_body(person.body, offset)
        props = [_moved_solid(s, offset) for s in person.props]
        out.append(Person(person.positions + offset, person.shape, person.appearance, person.posture,
                          person.action, person.source, person.track_id, props, body))
    return out


def _moved_body(body: Body, offset) -> Body:
    return Body([p.translated(offset) for p in body.primitives], body.head_center + offset,
                body.head_axes, body.head_radii, {k: v + offset for k, v in body.landmarks.items()})


def _moved_solid(solid: Solid, offset) -> Solid:
    moved = Solid(**{**solid.__dict__})
    for key in ("center", "a", "b"):
        if getattr(solid, key) is not None:
            setattr(moved, key, getattr(solid, key) + offset)
    return moved


# ----------------------------------------------------------------------------------- cameras

def look_at(eye, target, roll: float = 0.0, up=UP) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera rotation and translation (OpenCV axes: x right, y down, z forward) of a camera
    at ``eye`` looking at ``target``, turned by ``roll`` radians about its optical axis."""
    eye, target = np.asarray(eye, dtype=float), np.asarray(target, dtype=float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise PosekitError("look_at: the camera looks straight up or down; give another up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    rotation = np.stack([x, y, z])
    return rotation, -rotation @ eye


def people_points(people: list[Person]) -> np.ndarray:
    """Points that bound the people's bodies (sphere and ellipsoid extremes), (N, 3)."""
    steps = np.concatenate([np.eye(3), -np.eye(3)])
    points = []
    for person in people:
        arrays = person.body.stacked()
        for ends, radii in (("cone_a", "cone_r1"), ("cone_b", "cone_r2")):
            points.append((arrays[ends][:, None, :] + arrays[radii][:, None, None] * steps).reshape(-1, 3))
        reach = np.swapaxes(arrays["ell_axes"], 1, 2) * arrays["ell_radii"][:, :, None]   # (E, 3 axes, 3)
        points.append((arrays["ell_center"][:, None, :] + np.concatenate([reach, -reach], axis=1)).reshape(-1, 3))
    return np.concatenate(points)


def framing_camera(rng: np.random.Generator, points, width: int, height: int, *, distance=(2500.0, 7000.0),
                   eye_height=(300.0, 2400.0), fill=(0.45, 0.92), shift: float = 0.12,
                   max_roll_deg: float = 5.0, name: str = "") -> Camera:
    """A random pinhole camera around ``points`` (N, 3) that frames them: random direction, distance and
    height, looking at their centre, focal length so they fill a random fraction of the image, and the
    principal point moved so the group lands off-centre by up to ``shift`` of the image size."""
    points = np.asarray(points, dtype=float)
    lo, hi = points.min(axis=0), points.max(axis=0)
    center = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    angle = rng.uniform(0, 2 * np.pi)
    dist = max(rng.uniform(*distance), radius + 1500.0)
    eye = center + np.array([np.sin(angle) * dist, 0.0, np.cos(angle) * dist])
    eye[1] = rng.uniform(*eye_height)
    target = center + rng.normal(0, 0.05 * radius, 3)
    rotation, translation = look_at(eye, target, np.deg2rad(rng.uniform(-max_roll_deg, max_roll_deg)))
    cam = points @ rotation.T + translation
    xy = cam[:, :2] / cam[:, 2:3]
    span = np.maximum(xy.max(axis=0) - xy.min(axis=0), 1e-6)
    focal = min(rng.uniform(*fill) * height / span[1], 0.95 * width / span[0])
    mid = (xy.max(axis=0) + xy.min(axis=0)) / 2
    cx = width / 2 + rng.uniform(-shift, shift) * width - focal * mid[0]
    cy = height / 2 + rng.uniform(-shift, shift) * height - focal * mid[1]
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    return Camera(K=K, R=rotation, t=translation, width=width, height=height, name=name)


def ring_cameras(count: int = 8, *, radius: float = 3500.0, eye_height: float = 1200.0,
                 target=(0.0, 900.0, 0.0), width: int = 256, height: int = 256,
                 field_height: float = 2300.0, start_angle: float = 0.0) -> list[Camera]:
    """``count`` cameras on a horizontal ring (equal angles apart, all at ``eye_height``), each looking
    at ``target``; focal length so that ``field_height`` mm at the ring centre fills the image height.
    Camera k sits at angle ``start_angle + 2 pi k / count`` about +Y from +Z."""
    if count < 1:
        raise PosekitError(f"ring_cameras: need at least one camera, got {count}")
    target = np.asarray(target, dtype=float)
    cameras = []
    for k in range(count):
        angle = start_angle + 2 * np.pi * k / count
        eye = target + np.array([radius * np.sin(angle), 0.0, radius * np.cos(angle)])
        eye[1] = eye_height
        rotation, translation = look_at(eye, target)
        focal = height * float(np.linalg.norm(eye - target)) / field_height
        K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
        cameras.append(Camera(K=K, R=rotation, t=translation, width=width, height=height, name=f"cam{k}"))
    return cameras


# ----------------------------------------------------------------------------------- occluders

def random_occluder(rng: np.random.Generator, camera: Camera, people: list[Person]) -> Solid:
    """A box, ball or pole between the camera and a random body point, partly covering the person: its
    apparent size is 10-45 % of a standing person's height."""
    person = people[int(rng.integers(len(people)))]
    point = person.positions[int(rng.integers(len(person.positions)))]
    eye = camera.center
    fraction = rng.uniform(0.3, 0.8)
    center = eye + fraction * (point - eye)
    size = rng.uniform(0.1, 0.45) * 1700.0 * fraction / 2 * rng.uniform(0.5, 1.0, 3)
    view = point - eye
    side = np.cross(view, UP)
    side /= max(np.linalg.norm(side), 1e-9)
    center = center + side * rng.uniform(-1.5, 1.5) * size.max() + UP * rng.uniform(-1.5, 1.5) * size.max()
    colour = _hsv(rng)
    kind = rng.choice(3, p=[0.5, 0.2, 0.3])
    axes = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    axes[:, 2] *= np.sign(np.linalg.det(axes))
    if kind == 0:
        return Solid("box", colour, center=center, axes=axes, size=size)
    if kind == 1:
        return Solid("ellipsoid", colour, center=center, axes=axes, size=size)
    direction = UP if rng.random() < 0.6 else axes[:, 0]
    half = rng.uniform(1.0, 3.0) * size.max()
    radius = size.min()
    return Solid("cone", colour, a=center - half * direction, b=center + half * direction, r1=radius, r2=radius)


# ----------------------------------------------------------------------------------- rendering

@dataclass
class Lighting:
    """Light direction (world, unit, towards the light), ambient share, per-channel gain."""

    direction: np.ndarray
    ambient: float
    gain: np.ndarray


def sample_lighting(rng: np.random.Generator) -> Lighting:
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = rng.uniform(np.deg2rad(20), np.deg2rad(80))
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                          np.cos(elevation) * np.cos(azimuth)])
    return Lighting(direction, float(rng.uniform(0.3, 0.6)), rng.uniform(0.85, 1.15, 3))


@dataclass
class View:
    """A rendered view: float image (H, W, 3) in [0, 1] and the raster buffers (surface ids as in the
    module notes)."""

    image: np.ndarray
    raster: Raster


def rasterize(camera: Camera, people: list[Person], solids: list[Solid]) -> tuple[Raster, np.ndarray]:
    """Depth test every person primitive and solid; returns the raster and the albedo of each surface."""
    raster = Raster(camera.K, camera.width, camera.height, camera.dist)
    rotation, translation = camera.R, camera.t
    albedo = []
    for i, person in enumerate(people):
        arrays = person.body.stacked()
        base = i * len(PARTS)
        raster.round_cones(arrays["cone_a"] @ rotation.T + translation, arrays["cone_b"] @ rotation.T + translation,
                           arrays["cone_r1"], arrays["cone_r2"], base + arrays["cone_part"])
        raster.ellipsoids(arrays["ell_center"] @ rotation.T + translation, rotation @ arrays["ell_axes"],
                          arrays["ell_radii"], base + arrays["ell_part"])
        albedo.extend(person.appearance.albedo)
    for k, solid in enumerate(solids):
        ident = len(people) * len(PARTS) + k
        if solid.kind == "cone":
            raster.round_cone(rotation @ solid.a + translation, rotation @ solid.b + translation,
                              solid.r1, solid.r2, ident)
        elif solid.kind == "box":
            raster.box(rotation @ solid.center + translation, rotation @ solid.axes, solid.size, ident)
        else:
            raster.ellipsoid(rotation @ solid.center + translation, rotation @ solid.axes, solid.size, ident)
        albedo.append(solid.albedo)
    return raster.draw(), np.array(albedo, dtype=float).reshape(-1, 3)


def _eye_normals(radii) -> np.ndarray:
    return np.array([surface_normal_in_frame(radii, HEAD_LANDMARK_DIRECTIONS[n]) for n in ("left_eye", "right_eye")])


def _head_albedo(normals_cam, head_axes_cam, person: Person) -> np.ndarray:
    """Albedo of head pixels: hair on the crown (and the back for long hair), eyes, skin elsewhere."""
    local = normals_cam @ head_axes_cam                  # components: left, up, forward
    albedo = np.broadcast_to(person.appearance.albedo[PARTS.index("head")], local.shape).copy()
    style = person.appearance.hair_style
    if style:
        reach = -0.15 if style == 1 else -0.7
        hair = (local[:, 1] > 0.3) | ((local[:, 2] < -0.25) & (local[:, 1] > reach)) | \
               ((np.abs(local[:, 0]) > 0.8) & (local[:, 1] > 0.15))
        albedo[hair] = person.appearance.hair
    eyes = (local @ _eye_normals(person.body.head_radii).T).max(axis=1) > np.cos(np.deg2rad(EYE_SIZE_DEG))
    albedo[eyes] = EYE_COLOUR
    return albedo


def render_view(camera: Camera, people: list[Person], solids: list[Solid], background: np.ndarray,
                lighting: Lighting, texture: np.ndarray | None = None) -> View:
    """Draw people and solids over ``background`` (H, W, 3 float in [0, 1]) with Lambert light."""
    raster, albedo = rasterize(camera, people, solids)
    light = camera.R @ lighting.direction
    mask, ids, factor = lambert(raster, light, lighting.ambient)
    pixel_albedo = albedo[ids]
    head_id = PARTS.index("head")
    if people:
        normals = raster.normal[mask]
        for i, person in enumerate(people):
            on_head = ids == i * len(PARTS) + head_id
            if on_head.any():
                pixel_albedo[on_head] = _head_albedo(normals[on_head], camera.R @ person.body.head_axes, person)
    if texture is not None:
        factor = factor * texture[mask]
    image = background.astype(np.float32, copy=True)
    image[mask] = np.clip(pixel_albedo * (factor[:, None] * lighting.gain), 0.0, 1.0)
    return View(image, raster)


def finish_image(image: np.ndarray, rng: np.random.Generator, *, blur_probability: float = 0.5,
                 max_blur_sigma: float = 1.2, max_noise: float = 0.02) -> np.ndarray:
    """Optional Gaussian blur and sensor noise, then 8-bit RGB."""
    out = image.astype(np.float32)
    if rng.random() < blur_probability:
        sigma = float(rng.uniform(0.3, max_blur_sigma))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out *= 255.0
    noise = float(rng.uniform(0, max_noise))
    if noise > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(255.0 * noise)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 255.0).astype(np.uint8)


def clothing_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A soft multiplicative pattern (H, W) around 1 for cloth and skin."""
    cells = int(rng.integers(8, 40))
    return 0.9 + 0.2 * value_noise(rng, height, width, cells)[..., 0]


# ----------------------------------------------------------------------------------- labels

@dataclass
class PersonLabel:
    """Labels of one person in one view (skeleton ``skeleton``)."""

    keypoints: np.ndarray        # (K, 2) pixels (exact projections; NaN behind the camera)
    visibility: np.ndarray       # (K,) 0 outside / behind, 1 occluded, 2 visible
    keypoints_3d: np.ndarray     # (K, 3) camera coordinates, mm
    keypoints_world: np.ndarray  # (K, 3) world, mm
    box: np.ndarray              # (4,) x, y, w, h of the visible mask (NaN when not seen)
    area: float                  # visible mask pixels
    mask: np.ndarray             # (H, W) bool


def annotate_person(camera: Camera, view: View, index: int, person: Person, skeleton: str) -> PersonLabel:
    """Exact keypoints and depth-buffer visibility of person ``index`` of a rendered view.

    Tolerances: :func:`~posekit.data.synthetic.body.keypoint_tolerances`, plus
    :data:`SURFACE_PIXEL_SLACK` pixel footprints for the surface landmarks.
    """
    recipe = keypoint_recipes(get_skeleton(skeleton).name)
    world = body_keypoints(person.positions, person.body, skeleton)
    cam = camera.world_to_camera(world)
    pixels = camera.project(world, distort=False)  # synthetic cameras have no lens distortion
    base = index * len(PARTS)
    own = [np.array([], dtype=int) if on_surface else base + np.array(parts)
           for on_surface, parts in zip(recipe.surface, recipe.own_parts)]
    tolerance = keypoint_tolerances(person.body, skeleton)
    footprint = np.abs(cam[:, 2]) / camera.K[0, 0]             # mm covered by one pixel at the keypoint
    tolerance = np.where(recipe.surface, tolerance + SURFACE_PIXEL_SLACK * footprint, tolerance)
    flags = keypoint_visibility(view.raster, pixels, cam[:, 2], own, tolerance)
    ids = view.raster.ids
    mask = (ids >= base) & (ids < base + len(PARTS))
    area = float(mask.sum())
    if area > 0:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], dtype=float)
    else:
        box = np.full(4, np.nan)
    return PersonLabel(pixels, flags, cam, world, box, area, mask)
