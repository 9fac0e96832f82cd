"""RTP packets (RFC 3550) and the client-to-mixer audio level they carry (RFC 6464, in an
RFC 8285 header extension), parsed a batch at a time with array operations.

A media server that forwards RTP (Janus ``rtp_forward``, mediasoup ``PlainTransport``,
GStreamer ``udpsink``) sends one datagram per participant per 20 ms: at a thousand
participants, 50,000 datagrams a second. Parsing them one Python call per field would cost
more than switching; here a batch of datagrams is one byte array and each header field one
gather over it. Nothing here does I/O or reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RTP_VERSION = 2
FIXED_HEADER_BYTES = 12
CSRC_BYTES = 4
EXTENSION_HEADER_BYTES = 4
ONE_BYTE_PROFILE = 0xBEDE
"""RFC 8285 section 4.2: elements with a 4-bit id and a 4-bit length."""
TWO_BYTE_PROFILE = 0x1000
TWO_BYTE_PROFILE_MASK = 0xFFF0
"""RFC 8285 section 4.3: 0x100 and 4 application bits; 8-bit ids and lengths."""
ONE_BYTE_RESERVED_ID = 15
"""RFC 8285: id 15 in the one-byte form ends the parse of the block."""
RTCP_FIRST, RTCP_LAST = 192, 223
"""Second octets of RTCP packets sharing the port (RFC 5761 section 4: packet types 192-223
are not used as RTP payload types with the marker bit)."""
MAX_EXTENSION_STEPS = 32
"""Elements and padding bytes looked at per extension block. A browser sends 3-6 elements;
a block needing more steps before the audio level is taken as having none (a packet is not
refused for it), so a crafted block costs at most this many array passes per batch."""
NO_LEVEL = -1

# why a datagram was not an RTP packet with a payload (``Packets.reason``)
OK, TOO_SHORT, BAD_VERSION, CSRC_OVERRUN, EXTENSION_OVERRUN, BAD_PADDING, RTCP = range(7)
REASONS = ("ok", "too_short", "bad_version", "csrc_overrun", "extension_overrun",
           "bad_padding", "rtcp")
"""Names for the metrics (a fixed, small label set)."""


@dataclass
class Packets:
    """A batch of datagrams, parsed: one element per datagram, in arrival order. Fields of
    a datagram whose ``reason`` is not OK are zeros."""
    reason: np.ndarray          # int8: OK or why not
    marker: np.ndarray          # bool
    payload_type: np.ndarray    # uint8, 0..127
    sequence: np.ndarray        # int64, 0..65535
    timestamp: np.ndarray       # int64, 0..2^32-1
    ssrc: np.ndarray            # int64, 0..2^32-1
    payload_start: np.ndarray   # int64, offsets into ``data``
    payload_end: np.ndarray
    extension_start: np.ndarray  # int64: the header extension's elements, [start, end)
    extension_end: np.ndarray
    extension_profile: np.ndarray  # int64: 0xBEDE, 0x100x, other, or -1 (none)
    data: np.ndarray            # uint8: the datagrams end to end, then zero padding

    def __len__(self) -> int:
        return len(self.reason)


_GUARD_BYTES = 16
"""Zeros after the last datagram, so that reading a field of a short datagram never
indexes past the array (its result is then discarded by the length checks)."""


def _u16(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (data[at].astype(np.int64) << 8) | data[at + 1]


def _u32(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (_u16(data, at) << 16) | _u16(data, at + 2)


def parse(datagrams: list[bytes]) -> Packets:
    """The RTP fixed header, CSRCs, header extension bounds and padding of each datagram
    (RFC 3550 section 5.1, RFC 8285 section 4.1)."""
    n = len(datagrams)
    lengths = np.fromiter(map(len, datagrams), np.int64, n)
    start = np.zeros(n, np.int64)
    if n:
        np.cumsum(lengths[:-1], out=start[1:])
    end = start + lengths
    # a fixed-header field of a short datagram may read into the next ones (or the guard):
    # such datagrams are refused by their length before any field is used
    data = np.frombuffer(b"".join(datagrams) + bytes(_GUARD_BYTES), np.uint8)
    at = start
    b0, b1 = data[at].astype(np.int64), data[at + 1].astype(np.int64)
    reason = np.full(n, OK, np.int8)
    reason[(b1 >= RTCP_FIRST) & (b1 <= RTCP_LAST)] = RTCP
    reason[(b0 >> 6) != RTP_VERSION] = BAD_VERSION
    reason[lengths < FIXED_HEADER_BYTES] = TOO_SHORT
    ok = reason == OK
    header_end = np.where(ok, start + FIXED_HEADER_BYTES + CSRC_BYTES * (b0 & 0x0F), 0)
    bad = ok & (header_end > end)
    reason[bad] = CSRC_OVERRUN
    ok &= ~bad
    has_extension = ok & ((b0 >> 4) & 1 == 1)
    extension_start = np.where(has_extension, header_end + EXTENSION_HEADER_BYTES, 0)
    bad = has_extension & (extension_start > end)
    words = np.zeros(n, np.int64)
    profile = np.full(n, -1, np.int64)
    readable = has_extension & ~bad
    if readable.any():
        h = header_end[readable]
        profile[readable] = _u16(data, h)
        words[readable] = _u16(data, h + 2)
    extension_end = extension_start + 4 * words
    bad |= has_extension & (extension_end > end)
    reason[bad] = EXTENSION_OVERRUN
    ok &= ~bad
    payload_start = np.where(has_extension, extension_end, header_end)
    padding = ok & ((b0 >> 5) & 1 == 1)
    pad = np.zeros(n, np.int64)
    last = np.maximum(end - 1, 0)
    pad[padding] = data[last[padding]]
    payload_end = end - pad
    bad = padding & ((pad == 0) | (payload_end < payload_start))
    reason[bad] = BAD_PADDING
    ok &= ~bad
    at_ok = np.where(ok, at, 0)
    zero = np.zeros(n, np.int64)
    return Packets(
        reason=reason, marker=ok & (b1 >> 7 == 1),
        payload_type=np.where(ok, b1 & 0x7F, 0).astype(np.uint8),
        sequence=np.where(ok, _u16(data, at_ok + 2), zero),
        timestamp=np.where(ok, _u32(data, at_ok + 4), zero),
        ssrc=np.where(ok, _u32(data, at_ok + 8), zero),
        payload_start=np.where(ok, payload_start, zero),
        payload_end=np.where(ok, payload_end, zero),
        extension_start=np.where(ok & has_extension, extension_start, zero),
        extension_end=np.where(ok & has_extension, extension_end, zero),
        extension_profile=np.where(ok & has_extension, profile, -1), data=data)


def audio_levels(p: Packets, extension_id: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The RFC 6464 client-to-mixer audio level of each packet, from the header extension
    element ``extension_id`` (per packet: the id its sender negotiated): (level 0..127 in
    -dBov, or NO_LEVEL; voice 1/0, or -1 without a level). Both RFC 8285 forms; elements
    are walked for all packets at once, one element per pass."""
    n = len(p)
    want = np.broadcast_to(np.asarray(extension_id, np.int64), (n,))
    level = np.full(n, NO_LEVEL, np.int64)
    voice = np.full(n, -1, np.int64)
    one = (p.extension_profile == ONE_BYTE_PROFILE)
    two = (p.extension_profile & TWO_BYTE_PROFILE_MASK) == TWO_BYTE_PROFILE
    walking = np.flatnonzero((one | two) & (p.reason == OK))
    pos = p.extension_start[walking]
    end = p.extension_end[walking]
    is_one = one[walking]
    data = p.data
    for _ in range(MAX_EXTENSION_STEPS):
        live = pos < end
        if not live.any():
            break
        walking, pos, end, is_one = walking[live], pos[live], end[live], is_one[live]
        first = data[pos].astype(np.int64)
        second = data[np.minimum(pos + 1, len(data) - 1)].astype(np.int64)
        padding_byte = first == 0
        element_id = np.where(is_one, first >> 4, first)
        length = np.where(is_one, (first & 0x0F) + 1, second)
        value_at = pos + np.where(is_one, 1, 2)
        stop = is_one & (element_id == ONE_BYTE_RESERVED_ID) & ~padding_byte
        fits = value_at + length <= end
        found = ~padding_byte & ~stop & fits & (length >= 1) & (element_id == want[walking])
        if found.any():
            byte = data[value_at[found]].astype(np.int64)
            level[walking[found]] = byte & 0x7F
            voice[walking[found]] = byte >> 7
        # padding: one byte; an element: its header and value; a stop, an overrun or the
        # level found: the end of the walk
        pos = np.where(padding_byte, pos + 1, value_at + length)
        pos[stop | ~fits | found] = end[stop | ~fits | found]
    return level, voice


def take(p: Packets, which: np.ndarray) -> Packets:
    """The packets ``which`` (indexes), over the same bytes."""
    return Packets(**{k: v if k == "data" else v[which] for k, v in vars(p).items()})


def payloads(p: Packets, which: np.ndarray) -> list[bytes]:
    """The payload bytes of the packets ``which`` (indexes)."""
    raw = p.data.tobytes()
    return [raw[s:e] for s, e in zip(p.payload_start[which].tolist(),
                                      p.payload_end[which].tolist())]
