"""Pose models: ``tflite`` (a small LiteRT runner) and ``blazepose`` (the bundled BlazePose Full
landmark model, run top-down on rotated crops)."""
