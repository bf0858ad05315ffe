"""Pose models.

- ``blazepose`` (+ ``tflite``): the bundled BlazePose Full landmark model, top-down on rotated crops.
- ``hrnet``, ``ditn``: trainable heatmap models (HRNet in the reference checkpoint layout; DITN's joint
  and bone branches on top), built by name with ``registry.build_model``; ``losses``, ``flops``, ``ops``.
- ``onnx_backend``: ONNX Runtime inference of exported models.

Submodules are imported on use, so the image pipeline does not load torch.
"""
