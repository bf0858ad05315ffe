"""``task: topdown2d``: heatmap pose models (HRNet, SimpleBaseline, DITN) trained on person crops.

Config sections (every value below has a default except the paths and the model name):

* ``model``: ``name`` (see :func:`posekit.models.registry.build_model`), ``options`` passed to it,
  ``pretrained``: ImageNet backbone weights (HRNet's ``hrnet_w32-36af842e.pth``, torchvision's
  ``resnet50-19c8e357.pth``) loaded into the backbone before training
  (:func:`posekit.models.registry.load_pretrained_backbone`).
* ``codec``: ``input_size`` and ``heatmap_size`` as [width, height], ``sigma``, ``bone_sigma``,
  ``dark`` (decoding). Bone targets are made when the loss has a bone term.
* ``loss``: :class:`posekit.models.losses.DITNLoss` options (``bone: null`` is HRNet's plain loss).
* ``data``: ``format`` (coco or mpii), ``skeleton``, ``root`` (relative paths below are under it),
  ``train`` / ``val`` {``annotations``, ``images``}, ``val.boxes`` (a COCO detection results file:
  evaluate on detected persons instead of ground-truth boxes), ``val.headboxes`` (MPII
  ``mpii_gt_val.mat``), ``box_padding``, ``cache_images`` and ``augment``
  (:class:`posekit.data.topdown.Augmentation`; ``upper_body`` by joint names).
* ``eval``: ``flip_test``, ``shift_heatmap``, and for COCO MMPose's post-processing:
  ``keypoint_score_threshold`` (rescoring), ``oks_nms_threshold``, ``box_score_threshold``.

Metrics: COCO OKS AP/AR (``AP`` picks the best checkpoint) or MPII PCKh (``PCKh``, at 0.5).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from posekit.data.structures import PoseInstances
from posekit.data.topdown import (Augmentation, TopDownDataset, predict_keypoints, read_detections,
                                  rescore, training_persons)
from posekit.detect.boxes import oks_nms
from posekit.engine.config import Field
from posekit.engine.tasks import Task
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

HEATMAP_LOSSES = ("mse", "focal_l2", "smooth_l1")

SCHEMA = {
    "model": {
        "name": Field("str"),
        "options": Field("mapping", {}),
        "pretrained": Field("path", None, nullable=True),
    },
    "codec": {
        "input_size": Field("ints", length=2, minimum=1, doc="[width, height] of the crop"),
        "heatmap_size": Field("ints", length=2, minimum=1, doc="[width, height]"),
        "sigma": Field("float", 2.0, minimum=1e-6),
        "bone_sigma": Field("float", None, minimum=1e-6, nullable=True),
        "dark": Field("bool", False),
    },
    "loss": {
        "joint": Field("str", "focal_l2", choices=HEATMAP_LOSSES),
        "bone": Field("str", "smooth_l1", choices=HEATMAP_LOSSES, nullable=True),
        "bone_weight": Field("float", 0.1, minimum=0.0),
        "gamma": Field("float", 2.0, minimum=0.0),
        "thre": Field("float", 0.01, minimum=0.0),
        "focal_factor": Field("str", "simple_pose", choices=("simple_pose", "printed")),
        "beta": Field("float", 1.0, minimum=1e-12),
    },
    "data": {
        "format": Field("str", "coco", choices=("coco", "mpii")),
        "skeleton": Field("str", "coco17"),
        "root": Field("path", "."),
        "train": {"annotations": Field("path"), "images": Field("path")},
        "val": {
            "annotations": Field("path", None, nullable=True),
            "images": Field("path", None, nullable=True),
            "boxes": Field("path", None, nullable=True),
            "headboxes": Field("path", None, nullable=True),
        },
        "box_padding": Field("float", 1.25, minimum=1.0),
        "cache_images": Field("bool", False),
        "augment": {
            "rotation_std": Field("float", 30.0, minimum=0.0),
            "rotation_max": Field("float", 30.0, minimum=0.0),
            "rotation_prob": Field("float", 0.6, minimum=0.0, maximum=1.0),
            "scale_std": Field("float", 0.35, minimum=0.0),
            "scale_range": Field("floats", [0.65, 1.35], length=2, minimum=1e-3),
            "flip_prob": Field("float", 0.5, minimum=0.0, maximum=1.0),
            "half_body_prob": Field("float", 0.0, minimum=0.0, maximum=1.0),
            "half_body_min_joints": Field("int", 8, minimum=0),
            "half_body_padding": Field("float", 1.5, minimum=1.0),
            "upper_body": Field("strs", []),
        },
    },
    "eval": {
        "flip_test": Field("bool", True),
        "shift_heatmap": Field("bool", True),
        "keypoint_score_threshold": Field("float", 0.2, minimum=0.0),
        "oks_nms_threshold": Field("float", 0.9, minimum=0.0),
        "box_score_threshold": Field("float", 0.0),
    },
}


class TopDown2DTask(Task):
    """Top-down heatmap pose estimation on COCO-format or MPII annotation files."""

    schema = SCHEMA
    higher_is_better = True

    def __init__(self, config: dict):
        from posekit.codecs.heatmap import HeatmapCodec
        from posekit.models.losses import build_loss

        super().__init__(config)
        data, codec = config["data"], config["codec"]
        self.skeleton = get_skeleton(data["skeleton"])
        self.metric = "AP" if data["format"] == "coco" else "PCKh"
        low, high = data["augment"]["scale_range"]
        if low > high:
            raise PosekitError(f"config data.augment.scale_range must be [low, high], got {[low, high]}")
        unknown = [n for n in data["augment"]["upper_body"] if n not in self.skeleton.joints]
        if unknown:
            raise PosekitError(f"config data.augment.upper_body: skeleton {self.skeleton.name!r} has no "
                               f"joint {unknown[0]!r}")
        if data["augment"]["half_body_prob"] > 0 and not data["augment"]["upper_body"]:
            raise PosekitError("config data.augment.upper_body must list the upper-body joints when "
                               "data.augment.half_body_prob > 0")
        self.codec = HeatmapCodec(self.skeleton, input_size=codec["input_size"],
                                  heatmap_size=codec["heatmap_size"], sigma=codec["sigma"],
                                  bone_sigma=codec["bone_sigma"], bones=config["loss"]["bone"] is not None,
                                  dark=codec["dark"])
        self.loss = build_loss(dict(config["loss"]))
        self._val = None  # (ground truth, persons, dataset) once built

    # -- model -----------------------------------------------------------------------------------
    def build_model(self):
        from posekit.models.registry import build_model, load_pretrained_backbone, read_state_dict

        spec = self.config["model"]
        model = build_model({"name": spec["name"], "skeleton": self.skeleton.name, **spec["options"]})
        if spec["pretrained"] is not None:
            state, _ = read_state_dict(spec["pretrained"])
            load_pretrained_backbone(model, state, source=str(spec["pretrained"]))
        return model

    def load_weights(self, model, state_dict, source):
        """Also takes MMPose's HRNet checkpoints (renamed to the reference layout)."""
        from posekit.models.registry import load_weights

        report = load_weights(model, state_dict, source=source)
        for kind in ("missing_keys", "unexpected_keys"):
            if report[kind]:
                raise PosekitError(f"{source}: the weights do not fit model {self.config['model']['name']} "
                                   f"({kind.replace('_', ' ')}: {report[kind][0]}, {len(report[kind])} in all)")

    # -- data ------------------------------------------------------------------------------------
    def _path(self, value: str) -> Path:
        return Path(self.config["data"]["root"]) / value

    def _read(self, annotations: str, headboxes: str | None = None, *, for_training: bool = False) -> PoseInstances:
        from posekit.data.coco import read_coco_keypoints
        from posekit.data.mpii import read_mpii

        path = self._path(annotations)
        if self.config["data"]["format"] == "coco":
            return read_coco_keypoints(path, skeleton=self.skeleton)
        with warnings.catch_warnings():
            if for_training:  # head boxes only matter for PCKh
                warnings.simplefilter("ignore")
            return read_mpii(path, headboxes=None if headboxes is None else self._path(headboxes))

    def train_dataset(self) -> TopDownDataset:
        data = self.config["data"]
        aug = data["augment"]
        augment = Augmentation(
            rotation_std=aug["rotation_std"], rotation_max=aug["rotation_max"], rotation_prob=aug["rotation_prob"],
            scale_std=aug["scale_std"], scale_range=tuple(aug["scale_range"]), flip_prob=aug["flip_prob"],
            half_body_prob=aug["half_body_prob"], half_body_min_joints=aug["half_body_min_joints"],
            half_body_padding=aug["half_body_padding"],
            upper_body=tuple(int(i) for i in self.skeleton.indices(aug["upper_body"])))
        persons = training_persons(self._read(data["train"]["annotations"], for_training=True))
        return TopDownDataset(persons, self._path(data["train"]["images"]), self.codec, augment=augment,
                              box_padding=data["box_padding"], cache_images=data["cache_images"])

    def val_dataset(self) -> TopDownDataset | None:
        data, val = self.config["data"], self.config["data"]["val"]
        if val["annotations"] is None:
            return None
        if val["images"] is None:
            raise PosekitError("config data.val.images must be set with data.val.annotations")
        gt = self._read(val["annotations"], val["headboxes"])
        if val["boxes"] is not None:
            if data["format"] != "coco":
                raise PosekitError("config data.val.boxes (detected persons) needs data.format coco")
            ids, boxes, scores = read_detections(self._path(val["boxes"]), gt.images,
                                                 score_threshold=self.config["eval"]["box_score_threshold"])
            k = len(self.skeleton)
            persons = PoseInstances(self.skeleton, np.full((len(ids), k, 2), np.nan), np.zeros((len(ids), k)),
                                    ids, boxes=boxes, scores=scores, images=gt.images)
        elif data["format"] == "coco":
            persons = gt.select(~gt.iscrowd & (gt.visibility > 0).any(axis=1))
        else:
            persons = gt  # MPII predictions stay aligned with the annotation entries
        dataset = TopDownDataset(persons, self._path(val["images"]), self.codec, box_padding=data["box_padding"],
                                 cache_images=data["cache_images"])
        self._val = (gt, persons, dataset)
        return dataset

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, model, batch):
        losses = self.loss(model(batch["image"]), batch)
        return losses["loss"], {k: v for k, v in losses.items() if k != "loss"}

    def predict(self, model, batch):
        settings = self.config["eval"]
        points, scores = predict_keypoints(model, batch["image"], batch["matrix"], self.codec,
                                           flip_test=settings["flip_test"], shift_heatmap=settings["shift_heatmap"])
        return list(zip(points, scores))

    def score(self, records, out_dir):
        if self._val is None:
            self.val_dataset()
        if not records:
            raise PosekitError("the evaluation set has no persons (check data.val and its boxes)")
        points = np.stack([r[0] for r in records]).reshape(-1, len(self.skeleton), 2)
        scores = np.stack([r[1] for r in records]).reshape(-1, len(self.skeleton))
        if self.config["data"]["format"] == "mpii":
            return self._score_mpii(points, out_dir)
        return self._score_coco(points, scores, out_dir)

    def _score_coco(self, points, scores, out_dir) -> dict:
        from posekit.data.coco import write_coco_results
        from posekit.metrics.coco import coco_keypoint_eval
        from posekit.metrics.pck import bbox_size, left_right_collapse, pck_bbox

        gt, persons, dataset = self._val
        settings = self.config["eval"]
        if self.skeleton.sigmas is None:
            raise PosekitError(f"skeleton {self.skeleton.name!r} has no OKS sigmas for COCO evaluation")
        instance_scores = rescore(scores, persons.scores, settings["keypoint_score_threshold"])
        areas = dataset.sizes.prod(axis=1)
        keep = []
        for image_id in np.unique(persons.image_ids):
            rows = np.flatnonzero(persons.image_ids == image_id)
            kept = oks_nms(points[rows], instance_scores[rows], areas[rows], self.skeleton.sigmas,
                           settings["oks_nms_threshold"])
            keep.extend(rows[kept])
        keep = np.sort(np.array(keep, dtype=int))
        pred = PoseInstances(self.skeleton, points[keep], scores[keep], persons.image_ids[keep],
                             boxes=persons.boxes[keep], scores=instance_scores[keep],
                             meta={"category_id": gt.meta.get("category_id", 1)})
        if out_dir is not None:
            write_coco_results(pred, Path(out_dir) / "keypoint_results.json")
        metrics = coco_keypoint_eval(gt, pred)
        if self.config["data"]["val"]["boxes"] is None:  # one prediction per annotated person
            labelled = persons.visibility > 0
            for thr in (0.1, 0.2):
                metrics[f"PCK@{thr}"] = pck_bbox(points, persons.keypoints, labelled, persons.boxes, thr)[1]
            metrics["LR-collapse"] = left_right_collapse(points, persons.keypoints, labelled,
                                                         bbox_size(persons.boxes), self.skeleton.flip_pairs)
        return metrics

    def _score_mpii(self, points, out_dir) -> dict:
        from posekit.metrics.pck import pckh

        gt = self._val[0]
        if out_dir is not None:
            np.save(Path(out_dir) / "mpii_predictions.npy", points)
        result = pckh(points, gt.keypoints, gt.visibility > 0, gt.head_boxes, skeleton=self.skeleton)
        metrics = {"PCKh": result["Mean"], "PCKh@0.1": result["Mean@0.1"], "AUC": result["AUC"]}
        metrics.update({k: v for k, v in result.items() if k not in ("per_joint", "Mean", "Mean@0.1", "AUC")})
        return metrics


__all__ = ["TopDown2DTask", "SCHEMA"]
