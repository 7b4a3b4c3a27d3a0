"""The train/eval mode of every module of a model, kept across a tool's run: ``check_grid``
runs a model in eval mode and ``update_bn`` in train mode, and ``model.train(was)`` after it
set every submodule to the top level's mode (a batch norm frozen in eval inside a training
model was training again; an MC-dropout layer kept in train mode inside an eval model was
not)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["kept_modes", "modes_kept_on_error"]


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore each module's own ``training`` flag on exit, whatever the body set."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def modes_kept_on_error(model: nn.Module) -> Iterator[None]:
    """Restore each module's own ``training`` flag if the body raises (a tool that leaves the
    model in a mode of its own when it succeeds: ``recalibrate_batch_norm``'s eval)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    except BaseException:
        for m, training in modes:
            m.training = training
        raise
