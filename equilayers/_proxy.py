"""The fix named when a ``torch.fx.Proxy`` reaches an equilayers check in place of a tensor."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["proxy_fix"]

#: What a ``torch.fx.Proxy`` in place of a tensor means, and the fix.
_PROXY_FIX = (" (torch.fx.symbolic_trace traced into an equilayers module, whose forward checks "
              "shapes: trace with equilayers.symbolic_trace(model), which keeps equilayers "
              "modules whole, or pass leaf_modules=list(equilayers.leaf_modules()) to a tool's "
              "tracer, e.g. torchvision's create_feature_extractor(..., tracer_kwargs=...))")


def proxy_fix(x: Any) -> str:
    """The fix to append to a "not a tensor" message when ``x`` is a ``torch.fx.Proxy``."""
    return _PROXY_FIX if isinstance(x, torch.fx.Proxy) else ""
