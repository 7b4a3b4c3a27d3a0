"""Shared checks for the metrics: model output, batch, transforms."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from .. import _checks as C
from ..testing._harness import check_values

__all__: list[str] = []

S = TypeVar("S", bound=str)


def check_batch(x: object, what: str, *, min_dim: int = 3) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: x must be a tensor batch; got {type(x).__name__}")
    if x.dim() < min_dim:
        forms = ("volumes (B, C, D, H, W) or (B, C, F, D, H, W)" if min_dim >= 5
                 else "images (B, C, H, W) or (B, C, F, H, W)")
        raise ValueError(f"{what}: x must be a batch of {forms}; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what}: x must be floating point; got dtype {x.dtype}")
    if x.shape[0] < 1:
        raise ValueError(f"{what}: the batch is empty (shape {tuple(x.shape)})")
    check_values(x, what)
    return x


def check_model(model: object, what: str) -> None:
    if not callable(model):
        raise TypeError(f"{what}: model must be an nn.Module or a callable; got "
                        f"{type(model).__name__}")


def tensor_output(y: object, what: str, *, batch: int | None = None,
                  floating: bool = False) -> torch.Tensor:
    """The model's output tensor (the first of a tuple). ``batch``: a metric that measures per
    sample needs the output's dim 0 to be the input's batch ``B`` (a scalar loss, or an output
    flattened across the batch, would be reshaped into the wrong samples); ``floating``: a
    metric that differentiates the output needs it floating point."""
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
        y = y[0]  # (logits, pose) of InvariantHead(return_pose=True) and similar
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what}: the model must return a tensor; got {type(y).__name__}")
    if batch is not None and (y.dim() == 0 or y.shape[0] != batch):
        raise ValueError(f"{what}: the model's output must keep the batch dim first (B={batch}"
                         f", one output per sample); got output shape {tuple(y.shape)}; return "
                         "per-sample outputs, e.g. logits (B, K), not a reduced loss")
    if floating and not (y.is_floating_point() or y.is_complex()):
        raise TypeError(f"{what}: the model's output must be floating point (it is "
                        f"differentiated); got dtype {y.dtype}")
    return y


def no_top1(y: torch.Tensor) -> bool:
    """Whether some row of logits ``y`` (classes on dim 1) has no top-1 class: a NaN logit,
    or an infinite maximum held by two or more classes (an overflowed float16 head's row of
    +inf). ``argmax`` reads either as class 0, and a model of them would score as consistent."""
    if y.isnan().any():
        return True
    if y.dim() < 2 or y.shape[1] < 2:
        return False
    top = y.amax(dim=1, keepdim=True)
    return bool(((y == top).sum(dim=1) > 1).logical_and(top.squeeze(1).isinf()).any())


def positive_int(value: object, name: str, what: str) -> int:
    """``value`` as an int >= 1: ``TypeError`` for a non-int (a bool too), ``ValueError`` for
    one below 1 (as every argument check of the package)."""
    return C.check_int(value, name, what, minimum=1)


def choice(value: Any, name: str, valid: tuple[S, ...], what: str) -> S:
    if value not in valid:
        raise ValueError(f"{what}: unknown {name}={value!r}; valid: "
                         + ", ".join(map(repr, valid)))
    return value
