"""The one YAML loader for every file the agent reads (config, web config, trust profiles).

yaml.SafeLoader builds no objects, but it still expands aliases (321 bytes of nested aliases became
millions of nodes: 1.3 s and 135 MB) and composes nested collections recursively (5,000 brackets raised
RecursionError). These files never need either: aliases are refused and nesting is capped, each as an
ordinary YAML error with its line, so callers report them like any other syntax error.

PyYAML's constructors also let Python's own errors escape on values the grammar accepts: a 5,000-digit
integer (int()'s digit limit), a date that does not exist (2001-02-30), `!!bool x`, `!!int ''`. Those
become YAML errors at the value's line too; callers catch only yaml.YAMLError."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import Event
from yaml.nodes import Node

MAX_DEPTH = 64
# What SafeConstructor's scalar constructors raise on a bad value (int(), float(), datetime(), a dict
# lookup for !!bool, a failed regex match for !!timestamp, indexing an empty string for !!int '')
_BAD_VALUE = (ValueError, ArithmeticError, TypeError, KeyError, IndexError, AttributeError)


class SafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with at most MAX_DEPTH nested collections."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not allowed here", self._mark())
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self._mark())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _BAD_VALUE as exc:
            raise ConstructorError(None, None, _problem(node, exc), node.start_mark) from None

    def _mark(self) -> Any:
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark


def _problem(node: Node, exc: Exception) -> str:
    """One line: the value (shortened: it may be 5,000 digits), the type it failed to be, and Python's
    reason when it has one worth reading (a datetime's, an int's digit limit)."""
    kind = str(node.tag).rsplit(":", 1)[-1]
    if not isinstance(node.value, str):  # a collection our own constructor refused (an unhashable key)
        return f"not a valid {kind} ({type(exc).__name__}: {str(exc)[:80]})"
    text = node.value
    shown = repr(text if len(text) <= 40 else text[:20] + "..." + text[-8:])
    reason = str(exc).split(";", 1)[0][:120] if isinstance(exc, ValueError | ArithmeticError) else ""
    return f"{shown} is not a valid {kind}" + (f" ({reason})" if reason else "")


def problem(exc: yaml.YAMLError) -> str:
    """What is wrong, in one line: a reader error (a control character, bad UTF-8) has no `problem` and a
    multi-line message."""
    text = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:200]


def safe_load(text: str | bytes) -> Any:
    """yaml.safe_load with the limits above."""
    return yaml.load(text, Loader=SafeLoader)
