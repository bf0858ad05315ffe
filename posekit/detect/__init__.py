"""Person detection: box operations, the :class:`Detections` every detector returns, and the
multi-person BlazePose detector."""
from posekit.detect.blazepose import BlazePoseDetector
from posekit.detect.boxes import Detections, iou_matrix, nms, weighted_nms

__all__ = ["Detections", "BlazePoseDetector", "iou_matrix", "nms", "weighted_nms"]
