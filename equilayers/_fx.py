"""``torch.fx`` symbolic tracing of models that hold equilayers modules, with those modules as
leaves (``call_module`` nodes), as ``torch.fx`` keeps ``torch.nn``'s own layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Tracer", "leaf_modules", "symbolic_trace"]


def leaf_modules() -> tuple[type[nn.Module], ...]:
    """Every public module class of :mod:`equilayers.nn` and :mod:`equilayers.models` (and of
    :mod:`equilayers.interop` once imported): the classes to keep whole when tracing (their
    forwards check shapes and sizes, which a ``torch.fx.Proxy`` does not have). For tools
    that take a list of leaf classes, such as torchvision's
    ``create_feature_extractor(model, return_nodes,
    tracer_kwargs={"leaf_modules": list(equilayers.leaf_modules())})``.

    Example:
        >>> from equilayers.nn import GroupConv2d
        >>> GroupConv2d in leaf_modules()
        True
    """
    import sys

    from . import models
    from . import nn as enn

    found = []
    # equilayers.interop's modules too once it is imported (it is not with the package; a
    # model that holds one has imported it)
    for package in (enn, models, sys.modules.get(f"{__package__}.interop")):
        if package is None:
            continue
        for name in package.__all__:
            obj = getattr(package, name)
            if isinstance(obj, type) and issubclass(obj, nn.Module) and obj not in found:
                found.append(obj)
    return tuple(found)


class Tracer(torch.fx.Tracer):
    """A ``torch.fx.Tracer`` that keeps every equilayers module (and any subclass of one)
    whole, besides ``torch.nn``'s own layers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._leaves = leaf_modules()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, module_qualified_name)


def symbolic_trace(root: nn.Module, concrete_args: dict[str, Any] | None = None
                   ) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace(root)`` with the equilayers modules inside ``root`` as leaf
    modules (:class:`Tracer`): the graph shows the model's own wiring (residual adds, pooling,
    heads) and calls each equilayers module as one node, which runs its usual forward. A
    model that is one equilayers module (a ``UNet``, say) traces to a single call of it, held
    as the submodule ``module`` (so its state dict's keys gain the prefix ``module.``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d
        >>> net = nn.Sequential(LiftingConv2d(1, 4, 3, group="p4"), nn.ReLU(),
        ...                     GroupConv2d(4, 4, 3, group="p4"), GroupPool())
        >>> gm = symbolic_trace(net)
        >>> [n.op for n in gm.graph.nodes]
        ['placeholder', 'call_module', 'call_module', 'call_module', 'call_module', 'output']
        >>> x = torch.randn(2, 1, 9, 9)
        >>> torch.equal(gm(x), net(x))
        True
    """
    if not isinstance(root, nn.Module) or isinstance(root, torch.jit.ScriptModule):
        kind = "a TorchScript module" if isinstance(root, nn.Module) else type(root).__name__
        raise TypeError(f"symbolic_trace: root must be an nn.Module; got {kind} (torch.fx "
                        "traces Python modules: pass the model before torch.jit.trace/script)")
    name = root.__class__.__name__
    if isinstance(root, leaf_modules()):  # the root is traced, never a leaf: hold it
        return _one_call(root, name)
    tracer = Tracer()
    graph = tracer.trace(root, concrete_args)
    return torch.fx.GraphModule(tracer.root, graph, name)


def _one_call(root: nn.Module, name: str) -> torch.fx.GraphModule:
    """The graph of a root that is itself an equilayers module: its positional arguments, one
    ``call_module`` of it (as the submodule ``module``), its output."""
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    graph = torch.fx.Graph()
    args = tuple(graph.placeholder(p.name) if p.default is inspect.Parameter.empty
                 else graph.placeholder(p.name, default_value=p.default)
                 for p in inspect.signature(root.forward).parameters.values() if p.kind in kinds)
    graph.output(graph.call_module("module", args))
    holder = nn.Module()
    holder.module = root
    return torch.fx.GraphModule(holder, graph, name)
