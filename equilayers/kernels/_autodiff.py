"""What the fast paths' custom autograd Functions, with ``out=`` buffers and hand-written
backwards, cannot take, so that they step aside for plain ops: a ``torch.func`` transform or a
forward-mode AD level (:func:`transforms_active`), a backward on a batch of gradients
(:func:`batched_grad`), and a tensor subclass (:func:`plain_tensor`).
"""

from __future__ import annotations

import torch

__all__ = ["batched_grad", "plain_tensor", "transforms_active"]


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jvp, ...) is running or a forward-mode
    AD level is open (``torch.autograd.forward_ad.dual_level()``): custom autograd Functions
    with ``out=`` buffers and hand-written backwards (no ``jvp``) must step aside for plain ops
    then. (Any open level counts, whether or not the call's tensors carry a tangent: reading
    a tangent would cost more than the fast path saves on the rare forward-AD call.)"""
    if torch.compiler.is_compiling():  # a traced graph holds plain ops either way
        return False
    return (torch._C._are_functorch_transforms_active()
            or torch.autograd.forward_ad._current_level >= 0)


_is_legacy_batched = getattr(torch._C._functorch, "is_legacy_batchedtensor", None)


def batched_grad(grad: torch.Tensor) -> bool:
    """Whether ``grad``, the gradient a hand-written backward receives, is torch's legacy
    batched tensor: ``torch.autograd.grad(..., is_grads_batched=True)``,
    ``torch.autograd.functional.jacobian``/``hessian(vectorize=True)`` and
    ``gradcheck(check_batched_grad=True)`` run the backward pass on a batch of gradients that
    way (no ``torch.func`` transform is active then: :func:`transforms_active` is False). Such
    a tensor has no batching rule for ``out=``, ``copy_`` or in-place writes into an unbatched
    buffer, so a backward takes its plain-op branch (the one ``create_graph=True`` takes). (On
    a torch without the check, False: the backward is then as before.)"""
    if torch.compiler.is_compiling():  # a traced backward holds no batched tensor (and
        return False  # Dynamo cannot trace the check)
    return _is_legacy_batched is not None and bool(_is_legacy_batched(grad))


def plain_tensor(x: torch.Tensor) -> bool:
    """Whether ``x`` is a plain tensor (a ``torch.Tensor`` or an ``nn.Parameter``, whose ops
    return plain tensors), not a tensor subclass. A subclass must see the op's own torch ops,
    as ``nn.AvgPool2d`` lets it: a ``__torch_function__`` subclass keeps its type through them,
    and a ``__torch_dispatch__`` wrapper (``TwoTensor``, a ``FakeTensor``, ``DTensor``) runs
    each op on what it wraps. The fast paths write into plain ``torch.empty`` buffers with
    ``out=`` and in place: the subclass was dropped, and a wrapper's inner ops wrote their
    results into one shared buffer in turn (a silent wrong answer)."""
    return type(x) is torch.Tensor or type(x) is torch.nn.Parameter
