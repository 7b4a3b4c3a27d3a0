from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture
def interpret(monkeypatch):
    """Let CPU tensors take the Triton kernel path (Triton's interpreter); no-op on CUDA."""
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)


@pytest.fixture(autouse=True)
def _group_registry():
    """Group names a test registers (``register_group``) are unregistered after it."""
    from equilayers.groups import _registry

    saved = list(_registry._ENTRIES)
    yield
    if _registry._ENTRIES != saved:
        _registry._ENTRIES[:] = saved
        _registry._lookup.cache_clear()


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded generator: tests draw their randomness from it, never from global state."""
    return torch.Generator().manual_seed(1234)


def readme_code(section: str) -> str:
    """The first ```python block of the README section titled ``section``."""
    body = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split("```python\n", 1)[1].split("```", 1)[0]
