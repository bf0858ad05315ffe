"""Identities across video frames and temporal smoothing of keypoints."""
from posekit.track.smoothing import OneEuroFilter, PoseSmoother
from posekit.track.tracker import Tracker, pose_similarity, suppress_duplicates

__all__ = ["Tracker", "pose_similarity", "suppress_duplicates", "OneEuroFilter", "PoseSmoother"]
