"""Run TensorRT engines: one engine (``EngineRunner``), or an artifact's two behind the runtime's interface."""
from __future__ import annotations

from pathlib import Path

from edgeclip.errors import BackendError

from .available import require_tensorrt


class EngineRunner:
    """Runs a serialised engine with torch CUDA tensors as buffers (TensorRT 10+ tensor API).

    ``expected`` (the engine's manifest entry) is checked first: an engine built by another TensorRT version or for
    another GPU architecture is refused before deserializing, with the command that rebuilds it.
    """

    def __init__(self, engine_path: str | Path, expected: dict | None = None):
        trt, cc = require_tensorrt()
        if expected and (expected.get("tensorrt") != trt.__version__ or expected.get("compute_capability") != cc):
            raise BackendError(f"engine {Path(engine_path).name} was built for TensorRT {expected.get('tensorrt')} "
                               f"on compute capability {expected.get('compute_capability')}; this machine has "
                               f"TensorRT {trt.__version__} on {cc}: rebuild it with 'edgeclip export --trt'")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {engine_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def __call__(self, x):
        """(B, ...) numpy batch -> (B, D) float32 numpy embeddings."""
        import numpy as np
        import torch
        xt = torch.from_numpy(np.ascontiguousarray(x)).cuda()
        self.context.set_input_shape(self.input, tuple(xt.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input, xt.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()


class TrtRuntime:
    """Duck-types ``edgeclip.runtime.Runtime`` (preprocess, tokenizer, embed_pixels, embed_ids) over two
    engines, so parity runs through TensorRT with the same code as through onnxruntime."""

    def __init__(self, artifact_dir: str | Path, engines: dict):
        from edgeclip.runtime import load
        base = load(artifact_dir)
        self.preprocess, self.tokenizer = base.preprocess, base.tokenizer
        d = Path(artifact_dir)
        self.image = EngineRunner(d / engines["image"]["engine"], engines["image"])
        self.text = EngineRunner(d / engines["text"]["engine"], engines["text"])

    def embed_pixels(self, pixels, batch_size: int = 64):
        import numpy as np
        return np.concatenate([self.image(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)])

    def embed_ids(self, ids, batch_size: int = 64):
        import numpy as np
        return np.concatenate([self.text(ids[i:i + batch_size]) for i in range(0, len(ids), batch_size)])
