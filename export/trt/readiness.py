"""Checks on an ONNX graph that need no TensorRT, recorded in every artifact's manifest (``trt_readiness``)."""
from __future__ import annotations

from pathlib import Path


def trt_readiness(onnx_path: str | Path, input_name: str) -> dict:
    """Will TensorRT's batch-only profile fit this graph? Checked without TensorRT.

    Checks that ``input_name`` is a graph input (the profile is set by that name), that every input and output has
    static dims except the batch (dim 0), and that constant folding succeeds. Folding is checked with polygraphy
    when it is installed; without it folding is not checked and ``fold`` is None (nothing else stands in for it).

    Returns:
        ``{"ok", "problems": [one line each], "fold": {"nodes_before", "nodes_after"} | None, "inputs": [names]}``.
    """
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    inputs = [i.name for i in m.graph.input]
    problems = [] if input_name in inputs else [f"no graph input named {input_name!r} (inputs: {inputs})"]
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            dynamic = not d.HasField("dim_value")
            if (i == 0) != dynamic:
                problems.append(f"{vi.name} dim {i} is {'dynamic' if dynamic else 'static'}")
    folded = None
    try:
        from polygraphy.backend.onnx import fold_constants, onnx_from_path
        from polygraphy.logger import G_LOGGER
        G_LOGGER.module_severity = G_LOGGER.ERROR
        before = len(onnx_from_path(str(onnx_path)).graph.node)
        folded_model = fold_constants(onnx_from_path(str(onnx_path)), error_ok=False)
        folded = {"nodes_before": before, "nodes_after": len(folded_model.graph.node)}
    except ImportError:
        pass
    except Exception as e:
        problems.append(f"constant folding failed: {str(e).splitlines()[0][:160]}")
    return {"ok": not problems, "problems": problems, "fold": folded, "inputs": inputs}
