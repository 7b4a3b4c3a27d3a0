"""equilayers: drop-in PyTorch layers for equivariant and invariant networks.

Group feature maps are plain 5-D tensors ``(B, C, F, H, W)``: ``C`` fields, each with a fiber of
``F`` slots (``|G|`` for regular fields, ``2M+1`` harmonic coefficients for rotation-order
fields). See :mod:`equilayers.groups` for the conventions.
"""

# _quiet_cli first: under our command line it imports torch quietly (see its docstring)
from . import _quiet_cli, functional, groups, kernels, metrics, models, nn, testing  # noqa: F401
from ._batchnorm import recalibrate_batch_norm, update_bn
from ._export import export
from ._fx import leaf_modules, symbolic_trace
from ._grid import Finding, check_grid
from ._surgery import antialias
from .groups import get as get_group

__version__ = "0.1.0"


def __getattr__(name: str):
    """``equilayers.interop`` on first use (it is not imported with the package: nothing in it
    is needed before a conversion)."""
    if name == "interop":
        import importlib

        return importlib.import_module(".interop", __name__)
    raise AttributeError(f"module 'equilayers' has no attribute {name!r}")

__all__ = [
    "__version__",
    "functional",
    "groups",
    "kernels",
    "metrics",
    "models",
    "nn",
    "testing",
    "interop",
    "get_group",
    "export",
    "recalibrate_batch_norm",
    "update_bn",
    "antialias",
    "symbolic_trace",
    "leaf_modules",
    "check_grid",
    "Finding",
]
