"""Random state: randomness comes from ``torch.Generator``\\ s, never from seeding torch's global
generator.

Code that draws random numbers itself takes a ``generator=`` argument. ``torch.nn``'s
initialisers (every module's ``reset_parameters``) draw from torch's global CPU generator and
take none; :func:`global_rng_from` runs such code on a generator's stream instead, and leaves the
global generator as it found it. This module is the only place in ``equilayers/`` and ``tests/``
that sets the global generator's state (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["global_rng_from"]


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
