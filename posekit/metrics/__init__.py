"""Evaluation metrics: pure functions of ground truth and predictions (numpy in, numbers out)."""
from posekit.metrics.classification import accuracy, classification_report, confusion_matrix  # noqa: F401
from posekit.metrics.coco import coco_keypoint_eval, keypoint_oks  # noqa: F401
from posekit.metrics.diagnostics import average_channel_distance, hoyer_sparsity  # noqa: F401
from posekit.metrics.nrsfm import normalized_shape_error, shape_error_xi  # noqa: F401
from posekit.metrics.pck import pck, pck_bbox, pckh  # noqa: F401
from posekit.metrics.pose3d import (auc_3d, evaluate_pose3d, mpjpe, mpjve, n_mpjpe,  # noqa: F401
                                    p_mpjpe, pck_3d, per_action, actionwise)
from posekit.metrics.posetrack import evaluate_posetrack  # noqa: F401
