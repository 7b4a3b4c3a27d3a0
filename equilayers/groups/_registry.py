"""Group names: :func:`get` looks a name up in the registry that :func:`register_group` fills.

Each group family registers a pattern for its names and a factory (the planar groups in
:mod:`equilayers.groups._planar`); a new family is a new file that calls
:func:`register_group` and is imported by ``equilayers/groups/__init__.py``. Names are matched
whole, after ``strip().lower()``, against the patterns in registration order (the first match
wins; a later pattern that also matches the name draws a warning); a looked-up group is
cached per name until the registry changes.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ._group import Group, GroupLike

__all__ = ["get", "register_group", "GroupRegistration", "registered_name"]


@dataclass(frozen=True)
class _Entry:
    pattern: re.Pattern
    factory: Callable[..., Group | None]
    form: str


_ENTRIES: list[_Entry] = []
#: Bumped by every registration and removal: a lookup that ran across one (another thread's
#: ``remove()`` while a slow factory ran) may have cached a stale answer, and is redone.
_GENERATION = [0]


def _changed() -> None:
    _GENERATION[0] += 1
    _lookup.cache_clear()


def _valid_forms() -> str:
    return ", ".join([e.form for e in _ENTRIES] + ["or a Group instance"])


class GroupRegistration:
    """What :func:`register_group` returns: ``remove()`` takes the names out of the registry
    again (as ``torch``'s hook handles); as a context manager it removes them on exit."""

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    def remove(self) -> None:
        if self._entry in _ENTRIES:
            _ENTRIES.remove(self._entry)
            _changed()

    def __enter__(self) -> GroupRegistration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"GroupRegistration({self._entry.pattern.pattern!r})"


def register_group(pattern: str, factory: Callable[..., Group | None], *,
                   form: str) -> GroupRegistration:
    """Make :func:`get` build groups for the names that match ``pattern``.

    Args:
        pattern: a regular expression matched against the whole name, case-insensitively
            (``r"c(\\d+)"``); its groups are passed to ``factory`` (lower-cased).
        factory: called as ``factory(*match.groups())``; returns the :class:`Group`, or
            ``None`` when the name matches but names no group (``"c0"``).
        form: how the names read in the unknown-name error (``"'cN' for N >= 1"``).

    Returns:
        A :class:`GroupRegistration` whose ``remove()`` (or ``with`` block) unregisters.

    Raises:
        ValueError: an invalid or already registered ``pattern``, an empty ``form``.
        TypeError: a ``factory`` that is not callable, a non-string ``pattern``/``form``.

    Example:
        >>> from equilayers.groups import get
        >>> with register_group(r"square", lambda: get("d4"), form="'square' (= 'd4')"):
        ...     get("square") == get("d4")
        True
    """
    what = "register_group"
    if not isinstance(pattern, str):
        raise TypeError(f"{what}: pattern={pattern!r} must be a regular expression string "
                        "(e.g. r'c(\\d+)')")
    if not pattern:
        raise ValueError(f"{what}: pattern='' matches no group name; give e.g. r'c(\\d+)'")
    try:
        compiled = re.compile(pattern, re.IGNORECASE)  # names are matched lower-cased
    except re.error as e:
        raise ValueError(f"{what}: pattern={pattern!r} is not a regular expression: {e}"
                         ) from None
    if not callable(factory):
        raise TypeError(f"{what}: factory={factory!r} must be callable (the match's groups "
                        "-> a Group, or None)")
    if not isinstance(form, str):
        raise TypeError(f"{what}: form={form!r} must be a string describing the names (e.g. "
                        "\"'cN' for N >= 1\")")
    if not form.strip():
        raise ValueError(f"{what}: form={form!r} must describe the names (e.g. "
                         "\"'cN' for N >= 1\"); got an empty string")
    if any(e.pattern.pattern == pattern for e in _ENTRIES):
        raise ValueError(f"{what}: pattern={pattern!r} is already registered; remove() its "
                         "registration first")
    if re.escape(pattern) == pattern:  # a literal name: unreachable if an earlier one takes it
        for earlier in _ENTRIES:
            if earlier.pattern.fullmatch(pattern.lower()):
                raise ValueError(f"{what}: the name {pattern!r} is already answered by the "
                                 f"registered pattern {earlier.pattern.pattern!r} "
                                 f"({earlier.form}), which get() tries first; pick another name")
    try:  # the factory must take one argument per group of the pattern
        inspect.signature(factory).bind(*("",) * compiled.groups)
    except TypeError:
        raise TypeError(f"{what}: factory={factory!r} must take {compiled.groups} positional "
                        f"argument(s), one per group of pattern={pattern!r}") from None
    except ValueError:  # no signature to read (some builtins): checked when called
        pass
    entry = _Entry(compiled, factory, form)
    _ENTRIES.append(entry)
    _changed()
    return GroupRegistration(entry)


@functools.lru_cache(maxsize=1024)  # bounded: names come from users (configs, sweeps)
def _lookup(name: str) -> Group:
    group, entry = _find(name)
    own = group.name.strip().lower() if isinstance(group.name, str) else group.name
    if own != name:  # layers and field types store the name and look it up again
        try:
            back: Group | None = _find(own)[0] if isinstance(own, str) else None
        except ValueError:
            back = None
        if back != group:
            found = f"get({group.name!r}) is {back!r}" if back is not None else (
                f"{group.name!r} names no registered group")
            raise ValueError(
                f"the factory registered for {entry.pattern.pattern!r} returned a group named "
                f"{group.name!r} for {name!r}, but {found}: a group's name must look itself "
                f"up (get(group.name) == group; layers store the name). Give the group a name "
                f"its own pattern answers")
    return group


def _find(name: str) -> tuple[Group, _Entry]:
    entries = list(_ENTRIES)  # a snapshot: another thread may register or remove meanwhile
    for i, entry in enumerate(entries):
        m = entry.pattern.fullmatch(name)
        if m is None:
            continue
        group = entry.factory(*m.groups())
        if group is None:
            break
        if not isinstance(group, Group):
            raise TypeError(f"the factory registered for {entry.pattern.pattern!r} returned "
                            f"{group!r} for {name!r}, not a Group")
        _warn_shadowed(name, group, entry, entries[i + 1:])
        return group, entry
    raise ValueError(f"unknown group {name!r}; valid forms: {_valid_forms()}")


def _warn_shadowed(name: str, group: Group, entry: _Entry, rest: list[_Entry]) -> None:
    """A pattern registered later that also matches ``name`` never answers it (the first match
    wins): say so once per name (lookups are cached), as a pattern such as ``r"(t)(\\d*)"``
    can only be checked against the earlier ones name by name."""
    later = [e for e in rest if e.pattern.fullmatch(name)]
    if later:
        warnings.warn(
            f"group name {name!r} also matches the later registered pattern "
            f"{later[0].pattern.pattern!r} ({later[0].form}), but {entry.pattern.pattern!r} "
            f"({entry.form}) was registered first and answers it: get({name!r}) is {group!r}. "
            f"Register a pattern that leaves {name!r} out, or use another name",
            stacklevel=5)


def get(group: GroupLike, name: str = "group", what: str = "") -> Group:
    """Return the group for a name (``"c4"``, ``"p4m"``, ``"so2"``, ...) or a :class:`Group`.
    ``name`` and ``what``: the argument and the caller its errors name.

    Raises:
        ValueError: for an unknown name, listing the valid forms.
        TypeError: for anything that is neither a string nor a Group.

    Example:
        >>> get("p4m").order
        8
    """
    if isinstance(group, Group):
        return group
    pre = f"{what}: " if what else ""
    if not isinstance(group, str):
        raise TypeError(f"{pre}{name}={group!r} must be a group name or a Group (valid "
                        f"forms: {_valid_forms()})"[:600])
    try:
        while True:
            generation = _GENERATION[0]
            found = _lookup(group.strip().lower())
            if generation == _GENERATION[0]:
                return found
            _lookup.cache_clear()  # the registry changed during the lookup: look again
    except ValueError as err:
        if not str(err).startswith("unknown group"):
            raise  # a registered factory's own refusal
        raise ValueError(f"{pre}unknown {name}={group!r}; valid forms: {_valid_forms()} (a "
                         "name registered with register_group exists in the process that "
                         "registered it: register it again in spawned workers and in a job "
                         "that loads the model)") from None


def registered_name(group: Group, name: str = "group", what: str = "") -> str:
    """``group.name``, checked to look ``group`` up again (``get(group.name) == group``):
    for the places that record a group by its name (a quotient field type, the group a layer's
    input is acted on with). An unregistered instance raised ``unknown group`` later, naming a
    string the user never passed."""
    try:
        back: Group | None = get(group.name)
    except (ValueError, TypeError):
        back = None
    if back != group:
        pre = f"{what}: " if what else ""
        found = (f"get({group.name!r}) is another group, {back!r}" if back is not None
                 else f"get({group.name!r}) finds no group")
        raise ValueError(f"{pre}{name}={group!r} is recorded by its name, but {found}: "
                         f"register it first (equilayers.groups.register_group) under a pattern "
                         f"that answers {group.name!r}")
    return group.name
