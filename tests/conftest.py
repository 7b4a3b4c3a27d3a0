from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


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


def doc_code(path: str, section: str) -> str:
    """The first ```python block of the ``## section`` or ``### section`` of a Markdown file.

    ``path`` is relative to the repository root (``"docs/layers/antialias.md"``); the section
    ends at the next heading of the same or a higher level.
    """
    text = (ROOT / path).read_text()
    for level in ("##", "###"):
        head = f"\n{level} {section}\n"
        if head in text:
            body = text.split(head, 1)[1]
            for stop in ("\n## ", "\n### ")[: len(level) - 1]:
                body = body.split(stop, 1)[0]
            break
    else:
        raise ValueError(f"{path} has no ## or ### section titled {section!r}")
    if "```python\n" not in body:
        raise ValueError(f"section {section!r} of {path} has no ```python block")
    return body.split("```python\n", 1)[1].split("```", 1)[0]
