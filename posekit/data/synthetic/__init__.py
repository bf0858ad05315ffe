"""Synthetic data engine: labelled people rendered from real human motion.

Real CMU motion capture (:mod:`~posekit.data.synthetic.motion`) and posture templates
(:mod:`~posekit.data.synthetic.postures`) pose a body of simple solids (:mod:`~posekit.data.synthetic.body`)
that a ray-casting rasteriser with a depth buffer draws (:mod:`~posekit.data.synthetic.render`) into scenes
(:mod:`~posekit.data.synthetic.scenes`). From them come labelled images, videos and multi-view groups
(:mod:`~posekit.data.synthetic.datasets`), 2D/3D pairs with detector-like noise
(:mod:`~posekit.data.synthetic.pairs`) and IMU signals (:mod:`~posekit.data.synthetic.imu`).
Everything is deterministic given a seed. The command line is ``posekit synth``.

The names below are imported on first use, so that ``import posekit.data.synthetic.cli`` (done by every
``posekit`` command) stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "body": ("PARTS", "BodyShape", "body_keypoints", "build_body", "keypoint_recipes"),
    "datasets": ("ImageConfig", "MultiviewConfig", "VideoConfig", "preview_grid", "synth_image", "synth_sequence",
                 "write_image_dataset", "write_multiview_dataset", "write_video_dataset"),
    "imu": ("SENSOR_SITES", "ImuNoise", "add_imu_noise", "imu_signals", "write_imu"),
    "motion": ("ACTIONS", "CMU_ACTIONS", "Variation", "apply_variation", "load_mocap_library", "mirror",
               "sample_variation"),
    "pairs": ("NoiseModel", "apply_noise", "sample_pair", "write_pairs"),
    "postures": ("POSTURES", "classify_posture", "pose_from_angles", "posture_features", "sample_posture"),
    "scenes": ("PoseSource", "ring_cameras"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'posekit.data.synthetic' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"posekit.data.synthetic.{module}"), name)
    globals()[name] = value
    return value
