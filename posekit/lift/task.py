"""``task: lift3d``: training and evaluation of the 3D pose machine, from 2D keypoints or from images.

``lift.frontend`` picks the transformer's input: ``keypoints`` (default; the keypoint lifter trained on
real motion capture, below) or ``cpm`` (the paper's image front end on Human3.6M, ``data.h36m``; see
"Images" at the end of these notes).

Data (``data`` section, keypoint front end): CMU motion-capture trials (``data.mocap``, read by
:func:`posekit.data.synthetic.motion.load_mocap_library`), resampled to ``data.fps``. Whole trials named
in ``data.holdout`` are kept out of training and form the evaluation set.

* Training clips are drawn on the fly: a random ``clip_length``-frame window of a training trial, varied
  like every synthetic subject (bone lengths, joint angles, mirror, turn), converted to h36m17, seen by a
  random pinhole camera (:func:`posekit.data.synthetic.pairs.random_camera`); with probability
  ``noise.probability`` the 2D gets the detector noise model (:func:`posekit.data.synthetic.pairs.apply_noise`),
  otherwise it is clean. ``clips_per_epoch`` clips make one epoch.
* Evaluation: each held-out trial, unvaried (the real subject), seen by ``val.cameras`` seeded random
  cameras, once with clean 2D and once with noisy 2D (``val.noise``: sigma 5 px + outliers). The whole
  sequence runs through the LSTM in one pass.

Training stages (``lift.stage``, Algorithm 1 of the paper; chain them with ``lift.init`` = the previous
stage's weights):

* ``transformer`` (Eq. 6): the 2D-to-3D transformer alone, ||p3d - p3d_gt||^2.
* ``projector`` (Eq. 2): transformer frozen; ||Psi_C(p3d) - p3d_gt||^2 + ||Psi_P(Psi_C(p3d)) - p2d_gt||^2.
* ``projector_ssl`` (self-supervised phase): transformer frozen; joint dropout (probability
  ``joint_dropout``: a dropped joint is zeroed in p3d and left out of the 2D loss); the 2D target is the
  network's input 2D (the "predicted" 2D), plus the 3D ground truth on Psi_C's output.
* ``joint`` (Eq. 7 as reconstructed; the printed equation compares a 2K and a 3K vector): all weights,
  ||p3d - gt||^2 + ||Psi_C(p3d) - gt||^2 + ||Psi_P(Psi_C(p3d)) - p2d||^2.
* ``all``: one run for small budgets: the transformer by Eq. 6 and, on its detached output (so the
  projector's losses do not reach it, as when it is frozen), the projector by Eq. 2 plus the
  self-supervised term with joint dropout.

Squared errors are summed over joints and coordinates and averaged over frames; 3D in metres
(root-relative), 2D in the normalised input space (:func:`posekit.lift.model.normalize_keypoints`).
The 2D terms are weighted by ``projection_weight`` (the paper adds the terms unweighted, 1.0; a smaller
weight keeps the still-untrained Psi_P from pulling Psi_C away from the 3D ground truth).

With ``val.flip`` (default) every output is averaged with that of the mirrored sequence, mirrored
back (test-time flip augmentation, posekit's addition). Metrics (lower is better, mm): ``{mpjpe, p_mpjpe, n_mpjpe, mpjve}_{clean, noisy}`` for the full model
(test-time correction), with suffix ``_nossc`` for Psi_C without test-time correction and ``_transformer``
for the transformer's output p3d; ``_single`` (``val.single_frame``) runs every frame alone.

Images (``lift.frontend: cpm``, :mod:`posekit.lift.images`): the model is
:class:`posekit.lift.images.ImagePoseMachine3D` (``PoseMachine3D(frontend="cpm")`` for ``data.h36m.crop``
pixel crops). Training clips and evaluation sequences come from MMPose-layout Human3.6M annotations
(``data.h36m``: subjects split by ``train_subjects`` / ``test_subjects``, ``frame_step``, ``crop``,
``scale_range``; ``data.clip_length`` frames per clip; the other ``data`` keys belong to the keypoint
front end). The stages are the same, with these differences:

* Eq. 6 compares the transformer's output with the max-min normalised target (the trunk learns with the
  rest of the transformer: posekit has no MPII-pretrained trunk to hold fixed); everything after it
  (projector, correction, metrics) works on the de-normalised root-relative metres.
* The 2D of Eq. 2 and the "predicted" 2D of the self-supervised stages, of ``joint`` and of the test-time
  correction is the annotation's 2D (``part``), normalised as the keypoint input, joints weighted by its
  visibility: the image model has no 2D head, so this is the paper's "w/ 2D GT" setting (Table 5).
* Evaluation runs each sequence through the LSTM in chunks of ``data.h36m.chunk`` frames (the state
  carried over); ``val.flip`` mirrors the crops. Metrics (mm, root-aligned): ``mpjpe`` (Protocol #1) and
  ``p_mpjpe`` (Procrustes, "Protocol #2" as MMPose numbers it) over all test frames, ``mpjpe_actions`` and
  ``p_mpjpe_actions`` the mean over actions (the tables' "Avg."), each with the suffixes above, and
  ``discarded``; ``per_action.json`` in the run folder lists every action.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from posekit.data.h36m import H36M_SPLITS
from posekit.data.synthetic.motion import apply_variation, load_mocap_library, resample, sample_variation
from posekit.data.synthetic.pairs import NoiseModel, apply_noise, random_camera
from posekit.engine.config import Field
from posekit.engine.tasks import Task
from posekit.errors import PosekitError
from posekit.lift import build_lifter
from posekit.lift.correction import CorrectionSettings, self_supervised_correction
from posekit.lift.images import (MIN_CROP, PAPER_CROP, H36MClips, H36MSequenceSet, ImagePoseMachine3D,
                                 load_h36m_frames, max_min_stats, mirror_2d, protocol_runs, root_relative_metres)
from posekit.lift.model import METRES, SKELETON, mirror_inputs, mirror_pose, normalize_keypoints
from posekit.metrics.pose3d import actionwise, mpjpe, mpjve, n_mpjpe, p_mpjpe, per_action
from posekit.skeletons import convert_keypoints, get_skeleton

STAGES = ("all", "transformer", "projector", "projector_ssl", "joint")

NOISE_SCHEMA = {
    "sigma": Field("float", 5.0, minimum=0.0),
    "swap_rate": Field("float", 0.005, minimum=0.0, maximum=1.0),
    "outlier_rate": Field("float", 0.01, minimum=0.0, maximum=1.0),
    "missing_rate": Field("float", 0.01, minimum=0.0, maximum=1.0),
}

SCHEMA = {
    "lift": {
        "frontend": Field("str", "keypoints", choices=("keypoints", "cpm"),
                          doc="transformer input: 2D keypoints, or images through the CPM trunk"),
        "model": {
            "width": Field("int", 1024, minimum=1, doc="FC and LSTM width (paper: 1024)"),
            "layers": Field("int", 2, minimum=1, doc="LSTM layers (paper: 2)"),
            "temporal": Field("str", "lstm", choices=("lstm", "fc"), doc="fc: the w/o-temporal ablation"),
            "projector_hidden": Field("int", 1024, minimum=1, doc="Psi_C hidden width (not stated)"),
            "projector_width": Field("int", 1024, minimum=1, doc="Psi_P width (paper: 1024)"),
        },
        "stage": Field("str", "all", choices=STAGES),
        "init": Field("path", None, nullable=True, doc="weights of the previous stage"),
        "init_parts": Field("strs", ["transformer", "projector"], choices=("transformer", "projector"),
                            doc="which parts of the model take their weights from init"),
        "joint_dropout": Field("float", 0.3, minimum=0.0, maximum=1.0, doc="paper: delta = 0.3"),
        "projection_weight": Field("float", 1.0, minimum=0.0, doc="weight of the 2D terms (paper: 1)"),
        "correction": {
            "steps": Field("int", 2, minimum=0),
            "epsilon_mm": Field("float", 5.0, minimum=0.0),
            "tau_mm": Field("float", 20.0, minimum=0.0),
            "optimizer": Field("str", "adam", choices=("adam", "sgd")),
            "lr": Field("float", 1e-4, minimum=0.0),
            "reference": Field("str", "initial", choices=("initial", "previous")),
            "update": Field("strs", ["correct", "project"], choices=("correct", "project"),
                            doc="which per-frame copies change (paper: both; public code: correct)"),
        },
    },
    "data": {
        "mocap": Field("path", None, nullable=True, doc="CMU motion capture (keypoint front end)"),
        "holdout": Field("strs", ["07_05", "09_06"], doc="CMU trials kept out of training"),
        "fps": Field("float", 50.0, minimum=1.0),
        "clip_length": Field("int", 32, minimum=1),
        "clips_per_epoch": Field("int", 4096, minimum=1),
        "image_size": Field("ints", [1000, 1000], length=2, minimum=16),
        "noise": {**NOISE_SCHEMA, "sigma": Field("float", 3.0, minimum=0.0),
                  "probability": Field("float", 0.5, minimum=0.0, maximum=1.0)},
        "val": {
            "cameras": Field("int", 4, minimum=1),
            "seed": Field("int", 1234, minimum=0),
            "noise": NOISE_SCHEMA,
            "single_frame": Field("bool", False, doc="also evaluate frame by frame (state reset)"),
            "correction": Field("bool", True, doc="evaluate with test-time correction"),
            "flip": Field("bool", True, doc="average with the mirrored sequence (test-time flip)"),
        },
        "h36m": {  # the image front end (lift.frontend: cpm); see posekit.lift.images
            "root": Field("path", None, nullable=True, doc="the dataset folder"),
            "annotations": Field("strs", ["annotation_body3d/fps10/h36m_train.npz",
                                          "annotation_body3d/fps10/h36m_test.npz"],
                                 doc="MMPose-layout .npz files, relative to root"),
            "images": Field("path", "images", doc="folder the imgnames are relative to, relative to root"),
            "train_subjects": Field("strs", list(H36M_SPLITS["train"]), doc="Protocol #1: S1 S5 S6 S7 S8"),
            "test_subjects": Field("strs", list(H36M_SPLITS["test"]), doc="Protocol #1: S9 S11"),
            "frame_step": Field("int", 25, minimum=1, doc="in video frames (paper: 50 -> 2 fps)"),
            "crop": Field("int", PAPER_CROP, minimum=MIN_CROP, doc="crop side in pixels (paper: 368)"),
            "scale_range": Field("floats", [0.9, 1.1], length=2, minimum=0.01,
                                 doc="random box scale in training (paper: 0.9-1.1)"),
            "chunk": Field("int", 16, minimum=1, doc="frames per forward pass at evaluation (memory only)"),
        },
    },
}


def _noise(settings: dict) -> NoiseModel:
    return NoiseModel(sigma=settings["sigma"], swap_rate=settings["swap_rate"],
                      outlier_rate=settings["outlier_rate"], missing_rate=settings["missing_rate"])


def h36m_positions(motion, fps: float) -> np.ndarray:
    """(T, 17, 3) world h36m17 joints (mm) of a cmu_mocap motion resampled to ``fps``."""
    positions = resample(motion.positions, motion.fps, fps) if fps != motion.fps else motion.positions
    return convert_keypoints(positions, None, "cmu_mocap", SKELETON)[0]


def view(world: np.ndarray, rng: np.random.Generator, size, noise: NoiseModel | None) -> dict:
    """One random camera's view of world joints (T, K, 3): network input, 3D target (metres,
    root-relative camera axes), normalised clean 2D, and the pixel 2D used."""
    width, height = size
    camera = random_camera(rng, world.reshape(-1, 3), width, height)
    cam = camera.world_to_camera(world)
    clean = camera.project(world, distort=False)
    scores = np.ones(clean.shape[:2])
    if noise is not None:
        detections = apply_noise(clean, SKELETON, rng, noise, (width, height))
        pixels, scores = detections["keypoints"], detections["scores"]
    else:
        pixels = clean
    root = get_skeleton(SKELETON).index("pelvis")
    inputs = normalize_keypoints(pixels, scores, size)
    joints = world.shape[1]
    return {"inputs": inputs, "target": ((cam - cam[:, root:root + 1]) / METRES).astype(np.float32),
            "target_2d": normalize_keypoints(clean, np.ones_like(scores), size)[:, :2 * joints].reshape(-1, joints, 2),
            "pixels": pixels, "scores": scores}


class TrainingClips:
    """On-the-fly training clips (see the module notes)."""

    def __init__(self, motions: list, config: dict):
        data = config["data"]
        self.length, self.size, self.count = data["clip_length"], tuple(data["image_size"]), data["clips_per_epoch"]
        self.noise, self.noise_probability = _noise(data["noise"]), data["noise"]["probability"]
        fps = data["fps"]
        self.sources = [resample(m.positions, m.fps, fps) for m in motions]
        self.sources = [s for s in self.sources if len(s) >= self.length]
        if not self.sources:
            raise PosekitError(f"config data.clip_length: no training trial has {self.length} frames")
        weights = np.array([len(s) - self.length + 1 for s in self.sources], dtype=float)
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.count

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        source = self.sources[int(rng.choice(len(self.sources), p=self.weights))]
        first = int(rng.integers(0, len(source) - self.length + 1))
        cmu = apply_variation(source[first:first + self.length], sample_variation(rng))
        world = convert_keypoints(cmu, None, "cmu_mocap", SKELETON)[0]
        noise = self.noise if rng.random() < self.noise_probability else None
        out = view(world, rng, self.size, noise)
        return {k: torch.from_numpy(np.ascontiguousarray(out[k], dtype=np.float32))
                for k in ("inputs", "target", "target_2d")}


class HeldOutSequences:
    """Held-out real trials, each seen by seeded cameras with clean and with noisy 2D."""

    def __init__(self, motions: list, config: dict):
        data = config["data"]
        size = tuple(data["image_size"])
        rng = np.random.default_rng(data["val"]["seed"])
        noise = _noise(data["val"]["noise"])
        self.items = []
        for motion in motions:
            world = h36m_positions(motion, data["fps"])
            for camera in range(data["val"]["cameras"]):
                state = rng.bit_generator.state
                for kind, model in (("clean", None), ("noisy", noise)):
                    rng.bit_generator.state = state  # the same camera for both kinds
                    out = view(world, rng, size, model)
                    self.items.append({"inputs": torch.from_numpy(out["inputs"]),
                                       "target": torch.from_numpy(out["target"]),
                                       "kind": kind, "trial": motion.meta.get("trial", "")})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class Lift3DTask(Task):
    schema = SCHEMA
    metric = "p_mpjpe_clean_nossc"
    higher_is_better = False

    def __init__(self, config: dict):
        super().__init__(config)
        self._motions = None
        self._h36m = None
        self.images = config["lift"]["frontend"] == "cpm"
        if self.images:
            self.metric = "mpjpe_actions_nossc"
            low, high = config["data"]["h36m"]["scale_range"]
            if low > high:
                raise PosekitError(f"config data.h36m.scale_range must be [low, high], got {[low, high]}")
            if config["data"]["h36m"]["root"] is None:
                raise PosekitError("config data.h36m.root must name the Human3.6M folder (lift.frontend: cpm)")
            frames = config["train"]["batch_size"] * config["data"]["clip_length"]
            if config["lift"]["stage"] != "transformer" and frames < 2:
                raise PosekitError("config train.batch_size x data.clip_length must be at least 2 to train the "
                                   "projector (its batch norm needs two frames)")

    def model_options(self) -> dict:
        return {"joints": len(get_skeleton(SKELETON)), **self.config["lift"]["model"]}

    def correction_settings(self) -> CorrectionSettings:
        return CorrectionSettings(**self.config["lift"]["correction"])

    def build_model(self):
        from posekit.engine.checkpoint import load_weights

        if self.images:
            model = ImagePoseMachine3D(**self.model_options(), crop=self.config["data"]["h36m"]["crop"])
            training = [self._h36m_frames().positions[rows] for rows in self._h36m_runs("train")]
            model.set_normalization(*max_min_stats(root_relative_metres(np.concatenate(training))))
        else:
            model = build_lifter(self.model_options())
        lift = self.config["lift"]
        if lift["init"]:
            state, _ = load_weights(lift["init"])
            state = {k: v.float() for k, v in state.items()}
            for part in ("transformer", "projector"):  # parts not taken from init keep their fresh weights
                if part not in lift["init_parts"]:
                    state.update({f"{part}.{k}": v for k, v in getattr(model, part).state_dict().items()})
            self.load_weights(model, state, lift["init"])
        stage = lift["stage"]
        model.transformer.requires_grad_(stage in ("all", "transformer", "joint"))
        model.projector.requires_grad_(stage != "transformer")
        return model

    def _split(self) -> tuple[list, list]:
        if self._motions is None:
            data = self.config["data"]
            if data["mocap"] is None:
                raise PosekitError("config data.mocap must name the motion-capture folder (lift.frontend: keypoints)")
            motions = load_mocap_library(data["mocap"])
            holdout = set(data["holdout"])
            trials = {m.meta.get("trial") for m in motions}
            unknown = holdout - trials
            if unknown:
                raise PosekitError(f"config data.holdout: no trial {sorted(unknown)[0]!r} in {data['mocap']}")
            train = [m for m in motions if m.meta.get("trial") not in holdout]
            if not train:
                raise PosekitError("config data.holdout leaves no trial for training")
            self._motions = (train, [m for m in motions if m.meta.get("trial") in holdout])
        return self._motions

    def _h36m_frames(self):
        if self._h36m is None:
            h36m = self.config["data"]["h36m"]
            root = Path(h36m["root"])
            self._h36m = load_h36m_frames([root / name for name in h36m["annotations"]], root / h36m["images"])
        return self._h36m

    def _h36m_runs(self, split: str) -> list:
        h36m = self.config["data"]["h36m"]
        key = f"data.h36m.{split}_subjects"
        return protocol_runs(self._h36m_frames(), h36m[f"{split}_subjects"], h36m["frame_step"], key)

    def train_dataset(self):
        if self.images:
            h36m = self.config["data"]["h36m"]
            return H36MClips(self._h36m_frames(), self._h36m_runs("train"), self.config["data"]["clip_length"],
                             h36m["crop"], h36m["scale_range"])
        return TrainingClips(self._split()[0], self.config)

    def val_dataset(self):
        if self.images:
            return H36MSequenceSet(self._h36m_frames(), self._h36m_runs("test"), self.config["data"]["h36m"]["crop"])
        held_out = self._split()[1]
        return HeldOutSequences(held_out, self.config) if held_out else None

    def collate(self, samples: list[dict]) -> dict:
        if "sequence" in samples[0]:
            if len(samples) != 1:
                raise PosekitError("lift3d evaluates whole sequences: set eval.batch_size to 1")
            return samples[0] | {"index": torch.tensor([samples[0]["index"]])}
        if "kind" in samples[0]:
            if len(samples) != 1:
                raise PosekitError("lift3d evaluates whole sequences: set eval.batch_size to 1")
            return samples[0] | {"inputs": samples[0]["inputs"][None], "target": samples[0]["target"][None],
                                 "index": torch.tensor([samples[0]["index"]])}
        return super().collate(samples)

    def training_step(self, model, batch: dict):
        lift = self.config["lift"]
        stage, dropout, projection_weight = lift["stage"], lift["joint_dropout"], lift["projection_weight"]
        target, target_2d = batch["target"], batch["target_2d"]
        joints = target.shape[-2]
        if self.images:  # Eq. 6 on the max-min normalised targets; the rest in metres
            raw, _ = model.transformer(batch["images"])
            p3d = model.denormalize(raw)
            transformer_error = raw - model.normalize(target)
            observed, scores = target_2d, batch["visibility"]
            clean_weight = scores.flatten(0, 1)
        else:
            inputs = batch["inputs"]
            p3d, _ = model.transformer(inputs)
            transformer_error = p3d - target
            observed = inputs[..., :2 * joints].unflatten(-1, (joints, 2))
            scores = inputs[..., 2 * joints:3 * joints]
            clean_weight = None
        parts = {}
        if stage in ("all", "transformer", "joint"):
            parts["transformer"] = _sq(transformer_error)
        if stage == "transformer":
            return parts["transformer"], parts
        source = p3d if stage == "joint" else p3d.detach()
        flat_target = target.flatten(0, 1)
        if stage in ("all", "projector", "joint"):
            corrected, projected = model.projector(source.flatten(0, 1).flatten(1))
            parts["correct"] = _sq(corrected.unflatten(1, (joints, 3)) - flat_target)
            clean = stage != "joint"
            goal = (target_2d if clean else observed).flatten(0, 1)
            weight = clean_weight if clean else scores.flatten(0, 1)
            parts["project"] = projection_weight * _sq(projected.unflatten(1, (joints, 2)) - goal, weight)
        if stage in ("all", "projector_ssl"):
            flat = source.flatten(0, 1)
            keep = (torch.rand(flat.shape[:2], device=flat.device) >= dropout).float()
            corrected, projected = model.projector((flat * keep[..., None]).flatten(1))
            parts["ssl_correct"] = _sq(corrected.unflatten(1, (joints, 3)) - flat_target)
            parts["ssl_project"] = projection_weight * _sq(
                projected.unflatten(1, (joints, 2)) - observed.flatten(0, 1), scores.flatten(0, 1) * keep)
        return sum(parts.values()), parts

    def predict(self, model, batch: dict) -> list:
        if self.images:
            return self._predict_images(model, batch)
        inputs, target = batch["inputs"], batch["target"][0].cpu().numpy()
        record = {"kind": batch["kind"], "trial": batch["trial"], "target": target}
        outputs = self._outputs(model, inputs)
        if self.config["data"]["val"]["flip"]:
            mirrored = self._outputs(model, mirror_inputs(inputs, SKELETON))
            outputs = _average_mirrored(outputs, mirrored)
        return [record | outputs]

    def _outputs(self, model, inputs: torch.Tensor) -> dict:
        """The transformer's p3d, Psi_C's output (``nossc``), the corrected pose (``ssc``) and the
        frame-by-frame p3d (``single``) of one sequence (1, T, 3K + 2), as (T, K, 3) metres."""
        joints = (inputs.shape[-1] - 2) // 3
        out = {}
        p3d, _ = model.transformer(inputs)
        p3d = p3d[0]
        out["transformer"] = p3d.cpu().numpy()
        out["nossc"] = model.projector.correct(p3d.flatten(1)).reshape(p3d.shape).cpu().numpy()
        if self.config["data"]["val"]["correction"]:
            result = self_supervised_correction(
                copy.deepcopy(model.projector).cpu(), p3d.cpu(), inputs[0, :, :2 * joints].cpu().reshape(-1, joints, 2),
                inputs[0, :, 2 * joints:3 * joints].cpu(), self.correction_settings(), SKELETON)
            out["ssc"] = result["pose"]
            out["discarded"] = result["discarded"]
        if self.config["data"]["val"]["single_frame"]:
            single, _ = model.transformer(inputs[0][:, None])
            out["single"] = single[:, 0].cpu().numpy()
        return out

    def _predict_images(self, model, batch: dict) -> list:
        crops, observed, weights = batch["crops"], batch["target_2d"], batch["visibility"]
        record = {"sequence": batch["sequence"], "action": batch["action"], "target": batch["target"].cpu().numpy()}
        outputs = self._image_outputs(model, crops, observed, weights)
        if self.config["data"]["val"]["flip"]:
            flip = torch.as_tensor(get_skeleton(SKELETON).flip_indices, device=weights.device)
            mirrored = self._image_outputs(model, crops.flip(-2), mirror_2d(observed), weights.index_select(-1, flip))
            outputs = _average_mirrored(outputs, mirrored)
        return [record | outputs]

    def _image_outputs(self, model, crops: torch.Tensor, observed: torch.Tensor, weights: torch.Tensor) -> dict:
        """As :meth:`_outputs`, for one sequence's crops (T, crop, crop, 3); the correction aims at the
        annotation's normalised 2D ``observed`` (T, K, 2) with joint ``weights`` (T, K)."""
        val, chunk = self.config["data"]["val"], self.config["data"]["h36m"]["chunk"]
        p3d = model.lift_crops(crops, chunk)
        out = {"transformer": p3d.cpu().numpy(),
               "nossc": model.projector.correct(p3d.flatten(1)).reshape(p3d.shape).cpu().numpy()}
        if val["correction"]:
            result = self_supervised_correction(copy.deepcopy(model.projector).cpu(), p3d.cpu(), observed.cpu(),
                                                weights.cpu(), self.correction_settings(), SKELETON)
            out["ssc"] = result["pose"]
            out["discarded"] = result["discarded"]
        if val["single_frame"]:
            out["single"] = model.lift_crops(crops, chunk, single_frame=True).cpu().numpy()
        return out

    def score(self, records: list, out_dir: Path | None) -> dict:
        if self.images:
            return score_image_records(records, out_dir)
        return score_records(records)


def _average_mirrored(outputs: dict, mirrored: dict) -> dict:
    """Test-time flip: each pose averaged with its mirrored pass, mirrored back; a correction counts
    as discarded when either pass discarded it."""
    merged = {key: (pose + mirror_pose(mirrored[key], SKELETON)) / 2 for key, pose in outputs.items()
              if key != "discarded"}
    if "discarded" in outputs:
        merged["discarded"] = outputs["discarded"] | mirrored["discarded"]
    return merged


def _sq(diff: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error summed over coordinates and joints (joints weighted), averaged over frames."""
    per_joint = (diff ** 2).sum(-1)
    if weight is not None:
        per_joint = per_joint * weight
    return per_joint.sum(-1).mean()


def score_records(records: list) -> dict:
    """MPJPE, P-MPJPE, N-MPJPE and MPJVE (mm) per 2D kind and output (see the module notes)."""
    root = get_skeleton(SKELETON).index("pelvis")
    outputs = [("ssc", ""), ("nossc", "_nossc"), ("transformer", "_transformer"), ("single", "_single")]
    metrics = {}
    for kind in ("clean", "noisy"):
        chosen = [r for r in records if r["kind"] == kind]
        if not chosen:
            continue
        for key, suffix in outputs:
            if key not in chosen[0]:
                continue
            values = {name: [] for name in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")}
            frames = []
            for record in chosen:
                pred = (record[key] - record[key][:, root:root + 1]) * METRES
                gt = record["target"] * METRES
                frames.append(len(gt))
                for name, fn in (("mpjpe", mpjpe), ("p_mpjpe", p_mpjpe), ("n_mpjpe", n_mpjpe), ("mpjve", mpjve)):
                    values[name].append(fn(pred, gt))
            weights = np.array(frames, dtype=float)
            for name, vals in values.items():
                metrics[f"{name}_{kind}{suffix}"] = float(np.average(vals, weights=weights))
        if "discarded" in chosen[0]:
            metrics[f"discarded_{kind}"] = float(np.mean(np.concatenate([r["discarded"] for r in chosen])))
    return metrics


def score_image_records(records: list, out_dir: Path | None = None) -> dict:
    """Human3.6M metrics (mm) of the image front end (see the module notes); with ``out_dir``, also
    ``per_action.json``: {output: {metric: {action: mm}}}."""
    root = get_skeleton(SKELETON).index("pelvis")
    gt = np.concatenate([r["target"] for r in records]) * METRES
    actions = np.concatenate([[r["action"]] * len(r["target"]) for r in records])
    metrics, table = {}, {}
    for key, suffix in (("ssc", ""), ("nossc", "_nossc"), ("transformer", "_transformer"), ("single", "_single")):
        if key not in records[0]:
            continue
        pred = np.concatenate([r[key] - r[key][:, root:root + 1] for r in records]) * METRES
        table[key] = {}
        for name, fn in (("mpjpe", mpjpe), ("p_mpjpe", p_mpjpe)):
            metrics[f"{name}{suffix}"] = fn(pred, gt)
            metrics[f"{name}_actions{suffix}"] = actionwise(fn, pred, gt, actions)
            table[key][name] = per_action(fn, pred, gt, actions)
    if "discarded" in records[0]:
        metrics["discarded"] = float(np.mean(np.concatenate([r["discarded"] for r in records])))
    if out_dir is not None:
        (Path(out_dir) / "per_action.json").write_text(json.dumps(table, indent=2), encoding="utf-8")
    return metrics


def export_lifter(config_path, weights, out) -> dict:
    """Write ``weights`` (a run's best.safetensors / last.pt) as a half-precision lifter file that
    :func:`posekit.lift.load_lifter` reads: the model and correction settings of ``config_path`` travel
    in its metadata. Returns {"parameters", "bytes"}."""
    from posekit.engine.checkpoint import load_weights, save_weights
    from posekit.engine.config import load_config
    from posekit.engine.tasks import build_task
    from posekit.lift import metadata_json

    task = build_task(load_config(config_path), str(config_path))
    model = build_lifter(task.model_options())
    state, _ = load_weights(weights)
    task.load_weights(model, {k: v.float() for k, v in state.items()}, str(weights))
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_weights(half, out, metadata_json(task.model_options(), task.correction_settings()))
    return {"parameters": sum(p.numel() for p in model.parameters()), "bytes": Path(out).stat().st_size}


if __name__ == "__main__":  # python -m posekit.lift.task CONFIG WEIGHTS OUT
    import sys

    print(export_lifter(*sys.argv[1:4]))

__all__ = ["Lift3DTask", "TrainingClips", "HeldOutSequences", "view", "h36m_positions", "score_records",
           "score_image_records", "export_lifter", "STAGES"]
