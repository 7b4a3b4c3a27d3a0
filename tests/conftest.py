import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded generator: tests draw their randomness from it, never from global state."""
    return torch.Generator().manual_seed(1234)
