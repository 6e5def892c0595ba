"""The Gradio demo (``edgeclip demo``): student (ONNX runtime) next to teacher (PyTorch)."""
