"""Random state: randomness comes from ``torch.Generator``\\ s, never from seeding torch's global
generator.

Code that draws random numbers itself takes a ``generator=`` argument. ``torch.nn``'s
initialisers (every module's ``reset_parameters``) draw from torch's global CPU generator and
take none; :func:`global_rng_from` runs such code on a generator's stream instead, and leaves the
global generator as it found it. This module is the only place in ``equilayers/`` and ``tests/``
that sets the global generator's state (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

__all__ = ["global_rng_from", "keeps_global_rng"]

_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Run the block's draws from torch's global CPU generator on ``generator``'s stream.

    Inside the block the global CPU generator continues ``generator`` (so
    ``with global_rng_from(torch.Generator().manual_seed(0)): m = nn.Linear(3, 3)`` builds the
    module that ``torch.manual_seed(0)`` would), and ``generator`` is advanced past what the
    block drew. After the block the global generator is back where it was
    (``torch.random.fork_rng``): nothing outside it sees a seed. CUDA generators are not
    touched (build on the CPU, then move).
    """
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(f"generator={generator!r} must be a CPU torch.Generator "
                        "(torch.Generator().manual_seed(seed))")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.set_state(generator.get_state())
        try:
            yield generator
        finally:
            generator.set_state(torch.random.default_generator.get_state())


def keeps_global_rng(fn: _F) -> _F:
    """For a tool that builds torch modules only to overwrite their weights (``from_escnn``):
    their initialisers' draws are thrown away, and leave torch's global generators (the CPU's
    and those of the CUDA devices the first argument's tensors are on) where they were. A
    seeded training script that converted mid-run drew other batches and dropout masks
    afterwards, by an amount that grew with the model. The generators are saved and restored,
    so another thread's draws meanwhile are rewound: a tool that may run beside training
    (``export``) builds its modules without drawing instead (``_export._undrawn``)."""
    first = next(iter(inspect.signature(fn).parameters))  # the model (positional or keyword)

    @functools.wraps(fn)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        module = args[0] if args else kwargs.get(first)
        tensors = (list(module.parameters()) + list(module.buffers())
                   if isinstance(module, torch.nn.Module) else [])
        cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):
            return fn(*args, **kwargs)
    return keeping  # type: ignore[return-value]  # functools.wraps keeps the signature
