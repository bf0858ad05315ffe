"""Model export for deployment without PyTorch (ONNX)."""
