"""posekit: human pose analysis — 2D keypoints, 3D poses, multi-view and action recognition."""

__version__ = "0.1.0"

from posekit.errors import PosekitError  # noqa: E402
from posekit.skeletons import Skeleton, get_skeleton  # noqa: E402

__all__ = ["__version__", "PosekitError", "Skeleton", "get_skeleton"]
