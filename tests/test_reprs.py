"""A module's repr is a constructor call, as torch's are: ``Name(extra_repr)`` evaluated with
the public names builds a module with the same repr (a user copies it from a printed model).

Wrappers that take a module (``OnFibers``, as ``nn.Sequential``) print their child instead,
and an argument that is a function prints its name; both are left out."""

from __future__ import annotations

import warnings

import pytest
import torch
from _zoo import ZOO
from conftest import seeded_rng

import equilayers.interop as interop
import equilayers.models as models
import equilayers.nn as enn

PUBLIC = {name: getattr(mod, name) for mod in (enn, models, interop) for name in mod.__all__}
WRAPPERS = ("OnFibers",)


def _calls(name: str) -> list[tuple[type, str]]:
    with seeded_rng(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        top = ZOO[name].make()
    out = []
    for m in top.modules():
        cls = type(m)
        if PUBLIC.get(cls.__name__) is cls and cls.__name__ not in WRAPPERS and m.extra_repr():
            if "function=" not in m.extra_repr():
                out.append((cls, m.extra_repr()))
    return out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_repr_is_a_constructor_call(name):
    for cls, args in _calls(name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rebuilt = eval(f"{cls.__name__}({args})", {**PUBLIC, "torch": torch})  # noqa: S307
        assert type(rebuilt) is cls and rebuilt.extra_repr() == args, (name, args)

