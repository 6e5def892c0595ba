"""edgeclip's error hierarchy: one-line messages that name the thing, the value and the fix.

The CLI catches ``EdgeClipError``, prints it and exits 2; anything else is a bug and keeps its traceback.
"""


class EdgeClipError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(EdgeClipError):
    """A bad model name, budget, flag value or config file."""


class InheritError(EdgeClipError):
    """Weight inheritance cannot map the teacher onto the student (shape or key mismatch)."""


class DataError(EdgeClipError):
    """A dataset is empty, malformed or unreadable."""


class ExportError(EdgeClipError):
    """ONNX / TensorRT export failed or produced an invalid artifact."""


class ParityError(EdgeClipError):
    """An exported artifact disagrees with PyTorch beyond the tolerance of its precision."""


class BackendError(EdgeClipError):
    """An optional backend (tensorrt, gradio, a GPU) is missing."""


class StorageError(EdgeClipError):
    """An output could not be written (disk full, permissions); earlier complete outputs are kept."""


class NonFiniteError(EdgeClipError):
    """A model holds NaN/Inf weights, or training produced a non-finite loss or gradient."""


class IntegrityError(EdgeClipError):
    """An artifact file differs from the sha256 its manifest records, or a path leaves the artifact folder."""
