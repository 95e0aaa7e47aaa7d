"""The one YAML loader for every file the agent reads (config, web config, trust profiles).

yaml.SafeLoader builds no objects, but it still expands aliases (321 bytes of nested aliases became
millions of nodes: 1.3 s and 135 MB) and composes nested collections recursively (5,000 brackets raised
RecursionError). These files never need either: aliases are refused and nesting is capped, each as an
ordinary YAML error with its line, so callers report them like any other syntax error."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import Event
from yaml.nodes import Node

MAX_DEPTH = 64


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

    def _mark(self) -> Any:
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark


def safe_load(text: str | bytes) -> Any:
    """yaml.safe_load with the limits above."""
    return yaml.load(text, Loader=SafeLoader)
