"""Target codecs: one object both encodes training targets and decodes predictions, so the two
cannot drift apart."""
from posekit.codecs.heatmap import HeatmapCodec, flip_heatmaps

__all__ = ["HeatmapCodec", "flip_heatmaps"]
