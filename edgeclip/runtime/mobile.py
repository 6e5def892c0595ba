"""Sessions for the device formats that have a Python runtime here: ExecuTorch (.pte) and LiteRT (.tflite).

Each has the two methods ``Runtime`` uses of an onnxruntime session, ``get_inputs()`` and
``run(None, {name: array}) -> [array]``, and takes any batch: it runs chunks of the largest batch the file was
built for (ExecuTorch: its planned maximum; LiteRT: its fixed batch) and joins them. Core ML has no runtime off
macOS; on macOS ``CoreMLSession`` wraps ``coremltools``' predict (not run on these machines).

ExecuTorch's Python runtime links libtorch (its wheel imports torch first), so the ``[executorch]`` extra brings
torch; on a phone the C++ / Java / Swift runtime reads the same .pte without it. LiteRT's interpreter
(``ai-edge-litert``) is torch-free. Both are imported only when such a session is opened.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..artifact import IMAGE_INPUT, TEXT_INPUT
from ..errors import BackendError
from .session import SessionInput
from ..artifact.formats import MAX_BATCH, runs_on_this_platform

_TYPES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.int64): "tensor(int64)",
          np.dtype(np.int32): "tensor(int64)"}  # int32 ids: the session narrows int64 ids itself (vocab < 2**31)


def _chunks(x: np.ndarray, size: int, fixed: bool):
    """Pieces of ``x`` of at most ``size`` rows; with ``fixed`` the last one is zero-padded to ``size``."""
    for i in range(0, len(x), size):
        part = x[i:i + size]
        n = len(part)
        if fixed and n < size:
            part = np.concatenate([part, np.zeros((size - n, *part.shape[1:]), part.dtype)])
        yield part, n


class ExecuTorchSession:
    """A .pte program run by ``executorch.runtime`` (XNNPACK delegate on the CPU)."""

    def __init__(self, path: str | Path, input_name: str, threads: int | None = None, providers=None, options=None):
        try:
            import torch
            from executorch.runtime import Runtime, Verification
        except ImportError:
            raise BackendError("ExecuTorch programs need the [executorch] extra (pip install 'edgeclip[executorch]')") from None
        self._torch = torch
        if threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            _unsafe_reset_threadpool(int(threads))
        program = Runtime.get().load_program(Path(path), verification=Verification.InternalConsistency)
        self.method = program.load_method("forward")
        info = program.metadata("forward").input_tensor_meta(0)
        self.max_batch = int(info.sizes()[0])
        dtype = np.float32 if info.dtype() == 6 else np.int64  # ScalarType codes: 6 float, 4 long
        self._inputs = [SessionInput(input_name, _TYPES[np.dtype(dtype)], list(info.sizes()))]
        self._dtype = dtype

    def get_inputs(self) -> list[SessionInput]:
        return self._inputs

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        outs = [self.method.execute([self._torch.from_numpy(np.ascontiguousarray(part, self._dtype))])[0].numpy()
                for part, _ in _chunks(x, self.max_batch, fixed=False)]
        return [np.concatenate(outs)]


class LiteRtSession:
    """A .tflite model run by ``ai_edge_litert``'s interpreter (its XNNPACK delegate on the CPU)."""

    def __init__(self, path: str | Path, input_name: str, threads: int | None = None, providers=None, options=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BackendError("LiteRT models need the [litert-runtime] extra (pip install 'edgeclip[litert-runtime]')") from None
        self.interp = Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
        self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        self.batch = int(self._in["shape"][0])
        self._dtype = np.dtype(self._in["dtype"])
        self._inputs = [SessionInput(input_name, _TYPES.get(self._dtype, str(self._dtype)), list(self._in["shape"]))]

    def get_inputs(self) -> list[SessionInput]:
        return self._inputs

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        outs = []
        for part, n in _chunks(x, self.batch, fixed=True):
            self.interp.set_tensor(self._in["index"], np.ascontiguousarray(part, self._dtype))
            self.interp.invoke()
            outs.append(self.interp.get_tensor(self._out["index"])[:n].copy())
        return [np.concatenate(outs)]


class CoreMLSession:
    """An .mlpackage run by Core ML through ``coremltools`` (macOS only; written against coremltools 9's
    ``MLModel.predict``, never run on the Linux machines this project is tested on)."""

    def __init__(self, path: str | Path, input_name: str, threads: int | None = None, providers=None, options=None):
        if not runs_on_this_platform("coreml"):
            raise BackendError(f"Core ML predictions need macOS; on {sys.platform} the .mlpackage files are "
                               "conversion only (their parity is recorded as 'not run')")
        try:
            import coremltools as ct
        except ImportError:
            raise BackendError("Core ML models need the [coreml] extra (pip install 'edgeclip[coreml]')") from None
        self.model = ct.models.MLModel(str(path))
        spec = self.model.get_spec().description
        self._name, self._out = spec.input[0].name, spec.output[0].name
        io = TEXT_INPUT if input_name == TEXT_INPUT.name else IMAGE_INPUT
        self._dtype = np.int32 if io is TEXT_INPUT else np.float32  # Core ML takes int32 ids
        self._inputs = [SessionInput(input_name, io.ort_type, [None] * io.rank)]

    def get_inputs(self) -> list[SessionInput]:
        return self._inputs

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        outs = [np.asarray(self.model.predict({self._name: np.ascontiguousarray(part, self._dtype)})[self._out],
                           np.float32) for part, _ in _chunks(x, MAX_BATCH, fixed=False)]
        return [np.concatenate(outs)]
