"""A StreamRequest's steady ticks, read from its bytes by service/runtime/_wire.c when it is
built; and the engine's events written as a StreamResponse's bytes.

A steady tick (a known room's levels in the sticky roster's order, nothing else) is what a
media server sends for almost every room and tick; reading its four fields through the
protobuf objects cost more than the engine step of a 2,000-room batch. Without a C compiler
the extension is not built and every tick takes the protobuf path (the same responses).
"""
from __future__ import annotations

import numpy as np

try:
    from . import _wire
except ImportError:  # not built (no compiler at install time)
    _wire = None
if _wire is not None and getattr(_wire, "ABI", None) != 3:
    _wire = None  # a stale build of an older service/runtime/_wire.c (rebuild: pip install -e .)

SteadyTick = tuple  # (room_id, timestamp_ms, duration_ms, RFC 6464 bytes in roster order)

enabled = _wire is not None
"""Whether ``steady_ticks`` reads ticks (tests turn it off to compare with the protobuf
path)."""


def steady_ticks(serialized: bytes) -> list[SteadyTick | None] | None:
    """Per tick of the serialized StreamRequest: its SteadyTick, or None where the tick has
    anything else (events, audio, config, a roster, unknown fields) and must be read through
    protobuf. None if the scanner is not built or turned off."""
    if not enabled:
        return None
    try:
        return _wire.steady_ticks(serialized)
    except ValueError:  # not from protobuf's serializer: let protobuf say what is wrong
        return None


def steady_ticks_part(serialized: bytes, offset: int, max_ticks: int
                      ) -> tuple[list[SteadyTick | None], int] | None:
    """``steady_ticks`` of at most ``max_ticks`` ticks from byte ``offset``, and the offset
    after them: a huge batch read in parts. None as ``steady_ticks``."""
    if not enabled:
        return None
    try:
        return _wire.steady_ticks_part(serialized, offset, max_ticks)
    except ValueError:
        return None


SteadyColumns = tuple
"""(room ids: str, or None where a tick is not steady; timestamp_ms, duration_ms and level
counts as int64 arrays (0 where not steady); every steady tick's level bytes end to end)."""


def steady_columns(serialized: bytes, kept: list[str] | None = None) -> SteadyColumns | None:
    """``steady_ticks`` as columns, for a batch that is stepped as one (no Python object
    per tick but its room id). With ``kept`` (the last such batch's room ids), the room ids
    are ``kept`` itself when every tick is steady and names the same room at the same
    place: no str is made, and the caller knows it by identity. None if the scanner is not
    built, turned off, or the bytes are not a StreamRequest."""
    if not enabled:
        return None
    try:
        ids, t, d, levels, counts = (_wire.steady_columns(serialized) if kept is None
                                     else _wire.steady_columns_kept(serialized, kept))
    except ValueError:
        return None
    return (ids, np.frombuffer(t, np.int64), np.frombuffer(d, np.int64), levels,
            np.frombuffer(counts, np.int64))


def encode_events(out: bytearray, room_id: str, names: dict[int, str], events: list,
                  sequence: int, kinds: dict[type, int], reasons: dict[str, int]) -> int | None:
    """Append a room's engine events, numbered from ``sequence + 1``, to ``out`` as
    StreamResponse.events fields (``kinds``: the event classes' numbers in _wire.c;
    ``reasons``: SwitchReason values by the engine's reason); returns the last sequence.
    None, ``out`` unchanged, if the extension is not built or turned off, or an event is
    not one it writes: the caller builds the messages instead."""
    if not enabled:
        return None
    try:
        return _wire.encode_events(out, room_id, names, events, sequence, kinds, reasons)
    except (ValueError, TypeError, OverflowError):
        return None
