"""The fix named when a ``torch.fx.Proxy`` reaches an equilayers check in place of a tensor."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["proxy_fix"]

#: What a ``torch.fx.Proxy`` in place of a tensor means, and the fix.
_PROXY_FIX = (" (torch.fx traced into equilayers code, which checks shapes: for a module, trace "
              "with equilayers.symbolic_trace(model), which keeps equilayers modules whole, or "
              "pass leaf_modules=list(equilayers.leaf_modules()) to a tool's tracer, e.g. "
              "torchvision's create_feature_extractor(..., tracer_kwargs=...); for a function "
              "your forward calls, use its module twin, or import it by name and mark it "
              "with torch.fx.wrap('<its name>') at the top level of your file)")


def proxy_fix(x: Any) -> str:
    """The fix to append to a "not a tensor" message when ``x`` is a ``torch.fx.Proxy``."""
    return _PROXY_FIX if isinstance(x, torch.fx.Proxy) else ""
