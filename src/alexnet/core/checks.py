"""Checks of settings shared by every room: a value's type, a choice among names, and the
error a recipe that cannot run raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """A recipe that cannot run; the message names the key and what is allowed."""


#: The Python types a field's annotation admits (an int is a valid float; a bool is no int).
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_type(name: str, value: object, annotation: str) -> None:
    kinds = annotation.replace(" ", "").split("|")
    if "None" in kinds and value is None:
        return
    allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
    if not allowed:
        return  # tuples: checked where they are used
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        want = " or ".join(kinds)
        raise ValueError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")


def check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        shown = ", ".join("None" if c is None else str(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}")
