"""Frames between the agent and its probe worker: a 4-byte big-endian length, then a JSON document.

Bounded: a frame over MAX_FRAME is refused before it is read (FrameError), so a worker cannot make the
agent allocate without limit. What the JSON may hold is messages.py's business.
"""

from __future__ import annotations

import struct
from typing import IO

_HEADER = struct.Struct(">I")
# A probe of 16 addresses, each with 16 certificates of 32 KiB and a transcript of up to 1 MiB, fits.
MAX_FRAME = 32 << 20


class FrameError(ValueError):
    """A frame the other side should never have sent."""


def read_frame(stream: IO[bytes], limit: int = MAX_FRAME) -> bytes | None:
    """The next frame's body; None at a clean end of stream (or one cut inside a frame)."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    if size > limit:
        raise FrameError(f"frame of {size} bytes, over the {limit}-byte limit")
    body = stream.read(size)
    if len(body) < size:
        return None
    return body


def write_frame(stream: IO[bytes], body: bytes) -> None:
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes, over the {MAX_FRAME}-byte limit")
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()
