"""Typed data across process and file boundaries: dataclasses <-> JSON-able values, validated on the way in.

msgspec decodes straight into the frozen dataclasses of model.py (and path/, host/), checking every
field's type, so what the probe worker sends (it parses attacker-controlled certificates) can only ever
become these values: no pickle, no code, no unexpected types. Bytes travel as base64, times as RFC 3339,
enums by value.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class CodecError(ValueError):
    """A document or frame that is not what its type says."""


def to_builtins(value: object) -> Any:
    """dicts, lists, str, int, float, bool and None: ready for json.dumps, YAML or a template."""
    return msgspec.to_builtins(value)


def convert(value: object, kind: Any) -> Any:
    """Builtins (as to_builtins made them, or read from JSON) back into `kind`, strictly."""
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as exc:
        raise CodecError(str(exc)) from None


_ENCODER = msgspec.json.Encoder()


def encode(value: object) -> bytes:
    return _ENCODER.encode(value)


def decode(data: bytes, kind: type[T] | Any) -> Any:
    """JSON bytes into `kind`; CodecError for malformed JSON or a value of another shape."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CodecError(str(exc)[:300]) from None
