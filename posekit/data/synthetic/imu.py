"""Inertial sensor (IMU) signals from motion capture: what an accelerometer and a gyroscope strapped to
a body segment would measure.

Sensor sites (:data:`SENSOR_SITES`) sit on a segment of the ``cmu_mocap`` skeleton, a fraction of the way
from its proximal to its distal joint. The sensor frame is made from positions alone: x along the
segment's bone (``axis``, proximal -> distal), y the ``reference`` direction made orthogonal to x, z = x cross
y. References are chosen to stay far from the bone direction in any human pose: the thumb for the wrist
(the wrist sensor turns with the forearm's roll), the foot for the ankle, the hip line for the pelvis and
thighs, the shoulder line for the chest and head (the head's yaw is not in joint positions).

Signals (:func:`imu_signals`), in SI units, world Y up with gravity ``g = (0, -9.80665, 0)`` m/s^2:

* accelerometer = specific force in the sensor frame, ``R^T (a - g)``: a sensor at rest reads +9.81 m/s^2
  along the sensor axis pointing up;
* gyroscope = angular velocity in the sensor frame, ``vee(R^T dR/dt)`` rad/s.

Numerical differentiation: the 120 Hz joint positions are low-pass filtered (4th-order Butterworth, run
forwards and backwards, so without phase lag; cutoff ``min(12 Hz, 0.4 x rate)``), then interpolated by a
cubic spline in time; positions, velocities and accelerations at the output ``rate`` are the spline and
its exact derivatives (accelerations of the sensor are the same mix of the joints' accelerations as its
position). The orientation's derivative is a central difference of the spline-interpolated frame over
+-0.5 ms. Noise (:class:`ImuNoise`): white Gaussian noise plus a constant bias per sensor and axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, filtfilt

from posekit.data.structures import Motion
from posekit.data.synthetic.body import body_keypoints, build_body
from posekit.data.synthetic.files import write_npz
from posekit.data.synthetic.motion import SKELETON, apply_variation, frame_from_axes, sample_variation
from posekit.data.synthetic.scenes import rng_for
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

GRAVITY = np.array([0.0, -9.80665, 0.0])
"""Gravitational acceleration in the world (Y up), m/s^2."""
MAX_CUTOFF_HZ = 12.0
ORIENTATION_STEP_S = 5e-4


@dataclass(frozen=True)
class SensorSite:
    """Where a sensor sits (``fraction`` of the way from ``proximal`` to ``distal``) and how its frame is
    made: x from ``axis[0]`` to ``axis[1]``, y from ``reference[0]`` to ``reference[1]`` made orthogonal."""

    proximal: str
    distal: str
    fraction: float
    axis: tuple
    reference: tuple


def _sites() -> dict:
    sites = {
        "pelvis": SensorSite("Hips", "Spine", 0.0, ("Hips", "Spine"), ("RightUpLeg", "LeftUpLeg")),
        "chest": SensorSite("Spine1", "Neck", 0.5, ("Spine1", "Neck"), ("RightArm", "LeftArm")),
        "head": SensorSite("Head", "Head_End", 0.5, ("Head", "Head_End"), ("RightArm", "LeftArm")),
    }
    for side, s in (("left", "Left"), ("right", "Right")):
        thumb = "LThumb_End" if side == "left" else "RThumb_End"
        sites[f"{side}_wrist"] = SensorSite(f"{s}ForeArm", f"{s}Hand", 0.9, (f"{s}ForeArm", f"{s}Hand"),
                                            (f"{s}Hand", thumb))
        sites[f"{side}_thigh"] = SensorSite(f"{s}UpLeg", f"{s}Leg", 0.5, (f"{s}UpLeg", f"{s}Leg"),
                                            ("RightUpLeg", "LeftUpLeg"))
        sites[f"{side}_ankle"] = SensorSite(f"{s}Leg", f"{s}Foot", 0.85, (f"{s}Leg", f"{s}Foot"),
                                            (f"{s}Foot", f"{s}ToeBase_End"))
    return sites


SENSOR_SITES = _sites()
DEFAULT_SENSORS = ("left_wrist", "right_wrist", "pelvis")


@dataclass
class ImuNoise:
    """White noise standard deviations and bias spreads: accelerometer m/s^2, gyroscope rad/s."""

    acc_sigma: float = 0.05
    gyro_sigma: float = 0.005
    acc_bias: float = 0.05
    gyro_bias: float = 0.01

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not np.isfinite(value) or value < 0:
                raise PosekitError(f"IMU noise: {name} must be a finite number >= 0, got {value}")


def _check_sensors(sensors) -> tuple[str, ...]:
    sensors = tuple(sensors)
    unknown = [s for s in sensors if s not in SENSOR_SITES]
    if unknown or not sensors:
        raise PosekitError(f"unknown sensor(s) {unknown}; choose from {', '.join(SENSOR_SITES)}")
    return sensors


def smooth_positions(positions, fps: float, cutoff_hz: float) -> np.ndarray:
    """Zero-phase 4th-order Butterworth low-pass of positions (T, ...) along time."""
    pos = np.asarray(positions, dtype=float)
    if not 0 < cutoff_hz < fps / 2:
        raise PosekitError(f"IMU: the smoothing cutoff must be between 0 and {fps / 2} Hz, got {cutoff_hz}")
    b, a = butter(4, cutoff_hz / (fps / 2))
    pad = 3 * max(len(a), len(b))
    if len(pos) <= pad:
        raise PosekitError(f"IMU: need more than {pad} frames of motion, got {len(pos)}")
    return filtfilt(b, a, pos, axis=0)


def _frames(joints: np.ndarray, site: SensorSite, index) -> np.ndarray:
    axis = joints[..., index(site.axis[1]), :] - joints[..., index(site.axis[0]), :]
    reference = joints[..., index(site.reference[1]), :] - joints[..., index(site.reference[0]), :]
    return frame_from_axes(axis, reference)


def _vee(skew: np.ndarray) -> np.ndarray:
    return np.stack([skew[..., 2, 1] - skew[..., 1, 2], skew[..., 0, 2] - skew[..., 2, 0],
                     skew[..., 1, 0] - skew[..., 0, 1]], axis=-1) / 2


def imu_signals(positions, fps: float, rate: float, sensors=DEFAULT_SENSORS, cutoff_hz: float | None = None) -> dict:
    """Noise-free IMU signals of cmu_mocap positions (T, K, 3) mm at ``fps`` (see the module notes).

    Returns ``time`` (N,) s from the first frame, ``acc`` (N, S, 3) m/s^2 and ``gyro`` (N, S, 3) rad/s in
    the sensor frames, ``position`` (N, S, 3) mm, ``velocity`` (N, S, 3) mm/s, ``acceleration`` (N, S, 3)
    mm/s^2 (world), ``orientation`` (N, S, 3, 3) sensor -> world, ``joints`` (N, K, 3) the smoothed joints.
    """
    sensors = _check_sensors(sensors)
    skeleton = get_skeleton(SKELETON)
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 3 or pos.shape[1:] != (len(skeleton), 3):
        raise PosekitError(f"IMU: expected cmu_mocap positions (T, {len(skeleton)}, 3), got {pos.shape}")
    if not rate > 0:
        raise PosekitError(f"IMU: --rate must be positive, got {rate}")
    cutoff = min(MAX_CUTOFF_HZ, 0.4 * rate, 0.4 * fps) if cutoff_hz is None else cutoff_hz
    smooth = smooth_positions(pos, fps, cutoff)
    source_time = np.arange(len(pos)) / fps
    spline = CubicSpline(source_time, smooth.reshape(len(pos), -1), axis=0)
    count = int(np.floor(source_time[-1] * rate + 1e-9)) + 1
    time = np.arange(count) / rate
    shape = (count, len(skeleton), 3)
    joints, velocity, acceleration = (spline(time, nu).reshape(shape) for nu in (0, 1, 2))
    low = np.clip(time - ORIENTATION_STEP_S, 0.0, source_time[-1])
    high = np.clip(time + ORIENTATION_STEP_S, 0.0, source_time[-1])
    before, after = spline(low).reshape(shape), spline(high).reshape(shape)
    dt = high - low
    index = skeleton.index
    out = {key: [] for key in ("position", "velocity", "acceleration", "orientation", "acc", "gyro")}
    for name in sensors:
        site = SENSOR_SITES[name]
        p, d, f = index(site.proximal), index(site.distal), site.fraction
        mix = lambda a: (1 - f) * a[:, p] + f * a[:, d]  # noqa: E731 - the sensor's share of two joints
        rotation = _frames(joints, site, index)
        derivative = (_frames(after, site, index) - _frames(before, site, index)) / dt[:, None, None]
        world_acc = mix(acceleration) / 1000.0
        out["position"].append(mix(joints))
        out["velocity"].append(mix(velocity))
        out["acceleration"].append(mix(acceleration))
        out["orientation"].append(rotation)
        out["acc"].append(np.einsum("nji,nj->ni", rotation, world_acc - GRAVITY))
        out["gyro"].append(_vee(np.swapaxes(rotation, -1, -2) @ derivative))
    result = {key: np.stack(value, axis=1) for key, value in out.items()}
    result.update(time=time, joints=joints, sensors=np.array(sensors), rate=np.array(float(rate)),
                  cutoff_hz=np.array(float(cutoff)), gravity=GRAVITY.copy())
    return result


def add_imu_noise(signals: dict, rng: np.random.Generator, noise: ImuNoise) -> dict:
    """Noisy copies of ``acc`` and ``gyro`` (white noise + a constant bias per sensor and axis); the
    clean ones are kept as ``acc_clean``, ``gyro_clean``, the biases as ``acc_bias``, ``gyro_bias``."""
    out = dict(signals)
    sensors = signals["acc"].shape[1]
    acc_bias = rng.normal(0.0, noise.acc_bias, (sensors, 3))
    gyro_bias = rng.normal(0.0, noise.gyro_bias, (sensors, 3))
    out.update(acc_clean=signals["acc"], gyro_clean=signals["gyro"], acc_bias=acc_bias, gyro_bias=gyro_bias,
               acc=signals["acc"] + acc_bias + rng.normal(0.0, noise.acc_sigma, signals["acc"].shape),
               gyro=signals["gyro"] + gyro_bias + rng.normal(0.0, noise.gyro_sigma, signals["gyro"].shape))
    return out


def write_imu(out, motions: list[Motion], count: int, seed: int, *, seconds: float = 4.0, rate: float = 50.0,
              sensors=DEFAULT_SENSORS, noise: ImuNoise | None = None, skeleton: str = "coco17",
              progress=None) -> dict:
    """``count`` clips as ``out/imu_000000.npz``: a random window of ``seconds`` of a random trial, varied
    like every synthetic subject, with the :func:`imu_signals` arrays (noisy ``acc``/``gyro``, the clean
    ones, biases), ``keypoints_3d`` (N, J, 3) world mm of ``skeleton`` at the IMU rate, ``action``,
    ``source`` and ``first_frame``."""
    sensors = _check_sensors(sensors)
    if count < 1 or not seconds > 0:
        raise PosekitError(f"--n must be at least 1 and --seconds positive, got {count} and {seconds}")
    if not motions:
        raise PosekitError("IMU signals need motion capture: pass --mocap DIR (or set POSEKIT_MOCAP)")
    usable = [m for m in motions if (len(m) - 1) / m.fps >= seconds]
    if not usable:
        raise PosekitError(f"no motion-capture trial lasts {seconds} s")
    noise = noise or ImuNoise()
    out = Path(out)
    for index in range(count):
        rng = rng_for(seed, index)
        motion = usable[int(rng.integers(len(usable)))]
        length = int(round(seconds * motion.fps)) + 1
        first = int(rng.integers(0, len(motion) - length + 1))
        clip = apply_variation(motion.positions[first:first + length], sample_variation(rng))
        signals = add_imu_noise(imu_signals(clip, motion.fps, rate, sensors), rng, noise)
        keypoints = np.stack([body_keypoints(frame, build_body(frame), skeleton) for frame in signals["joints"]])
        write_npz(out / f"imu_{index:06d}.npz", **signals, keypoints_3d=keypoints,
                  skeleton=np.array(get_skeleton(skeleton).name),
                  action=np.array(motion.meta.get("action", "unknown")),
                  source=np.array(motion.meta.get("trial", "")), first_frame=np.array(first))
        if progress is not None:
            progress(index + 1, count)
    return {"clips": count, "sensors": list(sensors), "rate": float(rate), "out": str(out)}
