"""Distance to the limit: encoder FLOPs counted from the ONNX graph, and the CPU's GEMM peaks measured in each runtime.

A GEMM peak is the best throughput a runtime reaches on one large matrix multiply (fp32 ``MatMul``; int8 as
onnxruntime's ``MatMulInteger`` and as a QDQ ``MatMul`` that OpenVINO lowers to VNNI kernels) at a given thread
count. An encoder's latency divided into its FLOPs, over that peak, says how far it is from the machine's limit.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["encoder_flops", "gemm_peak", "GEMM_KINDS"]

GEMM_KINDS = {"onnxruntime": ("fp32", "int8-matmulinteger", "int8-qdq"), "openvino": ("fp32", "int8-qdq")}


def _dims(vi) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]


def encoder_flops(onnx_path: str | Path, batch: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of MatMul / Gemm / Conv / MatMulInteger at ``batch``, from shape inference.

    Elementwise ops, softmax and norms are left out: they are a few percent of a ViT and not GEMM-bound.
    """
    onnx = _onnx()
    m = onnx.load(str(onnx_path), load_external_data=False)
    for inp in m.graph.input:
        inp.type.tensor_type.shape.dim[0].dim_value = batch
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {vi.name: _dims(vi) for vi in (*m.graph.value_info, *m.graph.input, *m.graph.output)}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    total = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if not out or 0 in out:
            continue
        if n.op_type in ("MatMul", "MatMulInteger", "Gemm"):
            a = shapes.get(n.input[0])
            if not a:
                continue
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            k = a[-2] if trans_a else a[-1]
            total += 2 * int(np.prod(out)) * k
        elif n.op_type == "Conv":
            w = shapes.get(n.input[1])
            if w:
                total += 2 * int(np.prod(out)) * int(np.prod(w[1:]))
    return int(total)


def _gemm_graph(kind: str, n: int, path: Path) -> dict[str, np.ndarray]:
    """Write an [n, n] x [n, n] GEMM graph of ``kind``; return its feed."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if kind == "fp32":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"]))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
        feed = {"x": rng.standard_normal((n, n)).astype(np.float32)}
    elif kind == "int8-matmulinteger":
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, [n, n])
        inits.append(numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "w"))
        nodes.append(helper.make_node("MatMulInteger", ["x", "w"], ["y"]))
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
        feed = {"x": rng.integers(0, 255, (n, n), dtype=np.uint8)}
    else:  # QDQ: quantize x, dequantize x and w, MatMul (what int8-static encoders contain)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])
        inits += [numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "wq"),
                  numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
                  helper.make_node("MatMul", ["xd", "wd"], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
        feed = {"x": rng.standard_normal((n, n)).astype(np.float32)}
    g = helper.make_graph(nodes, f"gemm_{kind}", [x], [y], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return feed


def gemm_peak(backend: str, kind: str, threads: int, n: int = 1024, seconds: float = 2.0) -> dict:
    """Best-of-runs GFLOP/s of an [n, n] x [n, n] GEMM (2·n³ FLOPs) in ``backend`` at ``threads``."""
    from .backends import open_session
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "gemm.onnx"
        feed = _gemm_graph(kind, n, path)
        sess = open_session(path, backend, threads)
        for _ in range(3):
            sess.run(None, feed)
        times, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 5:
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
    flops = 2 * n ** 3
    return {"backend": backend, "kind": kind, "threads": threads, "n": n, "runs": len(times),
            "best_gflops": flops / min(times) / 1e9, "median_gflops": flops / float(np.median(times)) / 1e9}


def _onnx():
    """The onnx package (GEMM-peak graphs, FLOP counting): in [train] and [bench], not in the device runtime."""
    try:
        import onnx
    except ImportError:
        from ..errors import BackendError
        raise BackendError("edgeclip bench needs onnx and matplotlib: pip install 'edgeclip[bench]'") from None
    return onnx
