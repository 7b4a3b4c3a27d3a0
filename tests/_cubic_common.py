"""Shared by the cube-group tests (``tests/test_cubic*.py``): the groups and their orders."""

from __future__ import annotations

from equilayers.groups import FieldType

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8, "t": 12, "th": 24}
NAMES = sorted(ORDERS)
VOLUME = FieldType.trivial  # volumes of a cube group: 5-D
