"""A request as a whole: the limits on a batch, checked before any of it is applied (counted
from its bytes where the scanner reads them, a huge one in parts with a yield between
them), the waves its ticks are stepped in, and its response kept under the message size."""
from __future__ import annotations

import logging
from collections.abc import Callable, Generator

import grpc

from .. import wire
from ...api import speakerswitch_pb2 as pb
from ..config import ServiceConfig
from .model import TickError

log = logging.getLogger("speakerswitch.rooms")

PREPARE_CHUNK = 2048
"""Ticks of a batch sorted into waves between two yields: a batch of 20,000 ticks took
70 ms to sort before its first engine step, during which no other call was served."""

Entry = tuple
"""(Batch, its StreamResponse, tick index in the batch, the RoomTick or its
``wire.SteadyTick``, room id)"""


def entry_count(ticks, read: list[wire.SteadyTick | None] | None) -> int:
    """Audio frames, level bytes, roster names and events of these ticks (a steady tick
    read from the bytes: its level bytes)."""
    steps = count_entries(ticks, read, chunk=0)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def count_entries(ticks, read: list[wire.SteadyTick | None] | None, chunk: int = 0
                   ) -> Generator[None, None, int]:
    """``entry_count``, with a yield every ``chunk`` ticks (0: none)."""
    n = 0
    for i, t in enumerate(ticks):
        r = read[i] if read is not None else None
        if r is not None:
            n += len(r[3])
        else:
            lv = t.levels
            n += len(t.audio) + len(t.events) + len(lv.roster) + len(lv.levels)
        if chunk and i % chunk == chunk - 1:
            yield
    return n


def read_in_parts(raw: bytes, n_ticks: int
                   ) -> Generator[None, None, list[wire.SteadyTick | None] | None]:
    """``wire.steady_ticks(raw)``, PREPARE_CHUNK ticks at a time with a yield after each
    part (None where that gives None)."""
    read: list[wire.SteadyTick | None] = []
    offset = 0
    while len(read) < n_ticks:
        part = wire.steady_ticks_part(raw, offset, PREPARE_CHUNK)
        if part is None or not part[0]:
            return None
        read += part[0]
        offset = part[1]
        yield
    return read


def over_budget(request: pb.StreamRequest, cfg: ServiceConfig, limit_hit: Callable[[str], None],
                size: int | None = None, read: list[wire.SteadyTick | None] | None = None,
                counted: int | None = None) -> TickError | None:
    """A batch over a whole-batch limit, refused before any of it is applied (``size``:
    its bytes, if known; ``read``: its steady ticks, if read, counted without
    protobuf; ``counted``: its entries, if counted already; ``limit_hit``: told which
    limit refused it)."""
    ticks = request.ticks
    if len(ticks) > cfg.max_ticks_per_batch:
        limit_hit("max_ticks_per_batch")
        return TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, "ticks",
                         f"{len(ticks)} ticks exceed max_ticks_per_batch="
                         f"{cfg.max_ticks_per_batch}")
    # every entry takes at least a byte on the wire: a small batch cannot be over, and
    # the count (a Python loop over the ticks) is only paid by the large ones
    if (size if size is not None else request.ByteSize()) <= cfg.max_entries_per_batch:
        return None
    n = counted if counted is not None else entry_count(ticks, read)
    if n > cfg.max_entries_per_batch:
        limit_hit("max_entries_per_batch")
        return TickError(grpc.StatusCode.INVALID_ARGUMENT, "ticks",
                         f"{n} entries (audio frames, level bytes, roster names and "
                         f"events) exceed max_entries_per_batch="
                         f"{cfg.max_entries_per_batch}; send smaller batches")
    return None


def in_waves(entries: list[Entry]) -> Generator[None, None, list[list[Entry]]]:
    """The entries of a batch (or of several) by wave: wave k holds the k-th tick of each
    (tenant, room), so a room's ticks run in order; a yield every PREPARE_CHUNK entries."""
    keys = [(e[0].tenant, e[4]) for e in entries]
    waves: list[list[Entry]] = [entries]
    if len(set(keys)) != len(keys):
        # wave k holds the k-th tick of each (tenant, room): a room's ticks run in order
        waves, seen = [], {}
        for n, (key, entry) in enumerate(zip(keys, entries), 1):
            k = seen.get(key, 0)
            seen[key] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append(entry)
            if n % PREPARE_CHUNK == 0:
                yield
    return waves


EVENTS_BEFORE_SIZE_CHECK = 1000
"""Responses with fewer events are far below any max_message_bytes (an event with the
longest ids and a full forwarding set is under 9 KB): their size is not computed."""
RESPONSE_MARGIN_BYTES = 1024
"""Kept free under max_message_bytes for the response's own fields and framing."""


def fit(resp: pb.StreamResponse, max_bytes: int) -> None:
    """Leave out the events after those that fit ``max_bytes`` (they were decided and sent
    to watchers: Watch and GetRoom have them) and say how many were left out."""
    if resp.ByteSize() <= max_bytes - RESPONSE_MARGIN_BYTES:
        return
    framed = [framed_bytes(e.ByteSize()) for e in resp.events]
    budget = max_bytes - RESPONSE_MARGIN_BYTES - (resp.ByteSize() - sum(framed))
    kept = 0
    for size in framed:
        budget -= size
        if budget < 0:
            break
        kept += 1
    resp.events_omitted = len(resp.events) - kept
    del resp.events[kept:]
    log.warning("batch %d: %d events left out of its response (max_message_bytes=%d)",
                resp.batch_id, resp.events_omitted, max_bytes)


def framed_bytes(size: int) -> int:
    """An embedded message's bytes in its parent: a one-byte tag, the length as a varint."""
    return 1 + max(1, (size.bit_length() + 6) // 7) + size
