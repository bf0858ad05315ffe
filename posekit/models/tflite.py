"""A small runner for TensorFlow Lite models (LiteRT), with named outputs and clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posekit.errors import PosekitError


class TFLiteModel:
    """One single-input TFLite model.

    ``outputs`` maps the names the caller wants to the model's tensor names, so code reads
    ``result["scores"]`` rather than ``Identity_1``. Calling the model with an array of the input
    shape returns a dict of copies of the named outputs.
    """

    def __init__(self, path: str | Path, outputs: dict[str, str] | None = None, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise PosekitError(f"{self.path}: no such model file")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise PosekitError(f"num_threads must be a positive integer, got {num_threads!r}")
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PosekitError(f"{self.path}: not a readable TFLite model ({reason})") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise PosekitError(f"{self.path}: expected a model with one input, found {len(inputs)}")
        self._input = inputs[0]
        self.input_shape = tuple(int(v) for v in self._input["shape"])
        tensors = {d["name"]: d for d in self._interpreter.get_output_details()}
        wanted = outputs or {name: name for name in tensors}
        missing = sorted(set(wanted.values()) - set(tensors))
        if missing:
            raise PosekitError(f"{self.path}: model has no output tensor(s) {missing}; "
                               f"it has {sorted(tensors)}")
        self._outputs = {key: tensors[name]["index"] for key, name in wanted.items()}
        self.output_shapes = {key: tuple(int(v) for v in tensors[name]["shape"])
                              for key, name in wanted.items()}

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        arr = np.asarray(x, dtype=self._input["dtype"])
        if arr.shape != self.input_shape:
            raise PosekitError(f"{self.path.name}: input must have shape {self.input_shape}, "
                               f"got {arr.shape}")
        self._interpreter.set_tensor(self._input["index"], arr)
        self._interpreter.invoke()
        return {key: self._interpreter.get_tensor(index).copy() for key, index in self._outputs.items()}

    def check_output_shapes(self, expected: dict[str, tuple[int, ...]]) -> None:
        """Raise if the file is a different model than the caller was written for."""
        for key, shape in expected.items():
            if self.output_shapes.get(key) != tuple(shape):
                raise PosekitError(f"{self.path}: output {key!r} has shape "
                                   f"{self.output_shapes.get(key)}, expected {tuple(shape)}")


__all__ = ["TFLiteModel"]
