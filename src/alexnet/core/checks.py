"""Checks of settings shared by every room: a value's type, a choice among names, and the
error a recipe that cannot run raises."""

from __future__ import annotations

import ast
import contextlib
import re

import yaml

from alexnet.core.errors import UserError


class ConfigError(UserError):
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
        raise UserError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")


def check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        shown = ", ".join("None" if c is None else str(c) for c in choices)
        raise UserError(f"{name} must be one of {shown}; got {value!r}")


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def read_value(text: str, annotation: str) -> object:
    """A value typed on a command line (`--set section.key=TEXT`, `name:key=TEXT`), read by
    the type of the field it sets, so that text is never taken for what it is not.

    A field of text (str, a path; with None allowed) keeps the text as given: "runs/x #1",
    "yes", "null" and "2012-01-01" stay those strings, and only the empty text means None.
    A field that takes a list or a file of one (`list[str] | str`) reads a list when the
    text starts with "[". Any other field reads the text as YAML (0.01, 1e-4, true, [25, 51],
    null) or, for a tuple written as Python writes it, "(48, 128)", as that list;
    the field's check then refuses a value of the wrong type with its name."""
    kinds = annotation.replace(" ", "").split("|")
    if not text.strip():
        return None if "None" in kinds else text
    textual = {"str", "Path", "None"}
    if set(kinds) <= textual:
        return text
    others = any(k in _TYPES and k != "str" for k in kinds)
    if "str" in kinds and not others and not text.lstrip().startswith("["):
        return text  # a list, or the file that holds one
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and value.lstrip().startswith("("):
        with contextlib.suppress(ValueError, SyntaxError):
            literal = ast.literal_eval(value)
            value = list(literal) if isinstance(literal, tuple) else literal  # as YAML's
    if isinstance(value, str) and "float" in kinds and _EXPONENT.fullmatch(value):
        value = float(value)  # YAML 1.1 (PyYAML) wants 1.0e-4 where people write 1e-4
    return value
