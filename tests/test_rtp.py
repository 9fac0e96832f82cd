"""service/runtime/rtp.py parses RTP (RFC 3550) and the RFC 6464 level in RFC 8285 extensions.

Hand-made packets with exact values, then random and structured datagrams against a
one-packet-at-a-time reference parser written here from the RFCs: the batch parser must
agree with it on every field, and never raise.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.runtime import rtp


def packet(*, seq=1, ts=960, ssrc=0x11223344, pt=111, marker=False, csrcs=(),
           extension: bytes | None = None, profile=rtp.ONE_BYTE_PROFILE,
           payload=b"\x01\x02\x03", padding=0, version=2) -> bytes:
    b0 = (version << 6) | ((padding > 0) << 5) | ((extension is not None) << 4) | len(csrcs)
    out = struct.pack("!BBHII", b0, (marker << 7) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        ext = extension + bytes(-len(extension) % 4)
        out += struct.pack("!HH", profile, len(ext) // 4) + ext
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def level_element(level: int, voice: bool, ext_id: int = 1) -> bytes:
    """One-byte form, length field 0 (one byte of data)."""
    return bytes([ext_id << 4, (voice << 7) | level])


def parse_one(datagrams, ext_id=1):
    p = rtp.parse(datagrams)
    level, voice = rtp.audio_levels(p, ext_id)
    return p, level, voice


def test_a_browser_packet_with_its_audio_level():
    # abs-send-time (id 3, 3 bytes), the audio level (id 1), transport-wide cc (id 5, 2)
    ext = b"\x32\x01\x02\x03" + level_element(42, True) + b"\x51\x00\x07"
    raw = packet(seq=65535, ts=2**32 - 960, ssrc=0xDEADBEEF, marker=True, extension=ext,
                 payload=b"opus")
    p, level, voice = parse_one([raw])
    assert p.reason.tolist() == [rtp.OK]
    assert (p.sequence[0], p.timestamp[0], p.ssrc[0]) == (65535, 2**32 - 960, 0xDEADBEEF)
    assert (bool(p.marker[0]), int(p.payload_type[0])) == (True, 111)
    assert rtp.payloads(p, np.array([0])) == [b"opus"]
    assert (level[0], voice[0]) == (42, 1)


def test_csrcs_padding_and_the_two_byte_form():
    ext = b"\x00\x00" + bytes([7, 3]) + b"abc" + bytes([1, 1, 0x80 | 90])  # padding, id 7, id 1
    raw = packet(csrcs=(1, 2, 3), extension=ext, profile=0x1000, payload=b"xyz", padding=4)
    p, level, voice = parse_one([raw])
    assert p.reason.tolist() == [rtp.OK]
    assert rtp.payloads(p, np.array([0])) == [b"xyz"]
    assert (level[0], voice[0]) == (90, 1)


def test_the_level_is_read_under_the_id_each_sender_negotiated():
    a = packet(extension=level_element(30, False, ext_id=1) + level_element(60, True, 9))
    p = rtp.parse([a, a])
    level, voice = rtp.audio_levels(p, np.array([1, 9]))
    assert level.tolist() == [30, 60] and voice.tolist() == [0, 1]
    level, _ = rtp.audio_levels(p, 4)
    assert level.tolist() == [rtp.NO_LEVEL] * 2


def test_id_15_ends_a_one_byte_block():
    p, level, _ = parse_one([packet(extension=b"\xf0\x00" + level_element(20, True))])
    assert p.reason.tolist() == [rtp.OK] and level.tolist() == [rtp.NO_LEVEL]


@pytest.mark.parametrize("raw, reason", [
    (b"\x80\x6f\x00", rtp.TOO_SHORT),
    (packet(version=1), rtp.BAD_VERSION),
    (packet(csrcs=(1, 2))[:14], rtp.CSRC_OVERRUN),
    (packet(extension=b"\x10\x20\x30\x40")[:18], rtp.EXTENSION_OVERRUN),
    (bytes([0xA0]) + packet(payload=b"ab")[1:-1] + b"\x09", rtp.BAD_PADDING),  # pad > payload
    (bytes([0xA0]) + packet(payload=b"ab")[1:-1] + b"\x00", rtp.BAD_PADDING),  # pad 0
    (struct.pack("!BBHI", 0x80, 200, 6, 0x11223344) + bytes(20), rtp.RTCP),    # an SR
])
def test_bad_datagrams_are_named(raw, reason):
    p, level, _ = parse_one([packet(), raw, packet()])
    assert p.reason.tolist() == [rtp.OK, reason, rtp.OK]
    assert p.ssrc[1] == 0 and level[1] == rtp.NO_LEVEL


def test_an_element_that_overruns_its_block_gives_no_level():
    p, level, _ = parse_one([packet(extension=b"\x1f\x05")])  # id 1, 16 bytes, block of 4
    assert p.reason.tolist() == [rtp.OK] and level.tolist() == [rtp.NO_LEVEL]


def test_an_empty_batch():
    p, level, voice = parse_one([])
    assert len(p) == 0 and len(level) == 0 and len(voice) == 0


# --------------------------------------------------------------------- reference parser

def reference(raw: bytes, ext_id: int):
    """(reason, seq, ts, ssrc, payload, level, voice), one packet, from the RFCs."""
    none = (None, 0, 0, 0, b"", rtp.NO_LEVEL, -1)
    if len(raw) < 12:
        return (rtp.TOO_SHORT,) + none[1:]
    if raw[0] >> 6 != 2:
        return (rtp.BAD_VERSION,) + none[1:]
    if 192 <= raw[1] <= 223:
        return (rtp.RTCP,) + none[1:]
    seq, ts, ssrc = struct.unpack("!HII", raw[2:12])
    pos = 12 + 4 * (raw[0] & 15)
    if pos > len(raw):
        return (rtp.CSRC_OVERRUN,) + none[1:]
    level, voice = rtp.NO_LEVEL, -1
    if raw[0] & 0x10:
        if pos + 4 > len(raw):
            return (rtp.EXTENSION_OVERRUN,) + none[1:]
        profile, words = struct.unpack("!HH", raw[pos:pos + 4])
        start, end = pos + 4, pos + 4 + 4 * words
        if end > len(raw):
            return (rtp.EXTENSION_OVERRUN,) + none[1:]
        one, two = profile == 0xBEDE, profile & 0xFFF0 == 0x1000
        at, steps = start, 0
        while (one or two) and at < end and steps < rtp.MAX_EXTENSION_STEPS:
            steps += 1
            if raw[at] == 0:
                at += 1
                continue
            if one:
                eid, length, value = raw[at] >> 4, (raw[at] & 15) + 1, at + 1
                if eid == 15:
                    break
            else:
                eid = raw[at]
                length = raw[at + 1] if at + 1 < len(raw) else 0
                value = at + 2
            if value + length > end:
                break
            if eid == ext_id and length >= 1:
                level, voice = raw[value] & 0x7F, raw[value] >> 7
                break
            at = value + length
        pos = end
    stop = len(raw)
    if raw[0] & 0x20:
        pad = raw[-1]
        if pad == 0 or stop - pad < pos:
            return (rtp.BAD_PADDING,) + none[1:]
        stop -= pad
    return (rtp.OK, seq, ts, ssrc, raw[pos:stop], level, voice)


def check_against_reference(datagrams: list[bytes], ext_id: int) -> None:
    p, level, voice = parse_one(datagrams, ext_id)
    ok = np.flatnonzero(p.reason == rtp.OK)
    got_payloads = dict(zip(ok.tolist(), rtp.payloads(p, ok)))
    for i, raw in enumerate(datagrams):
        want = reference(raw, ext_id)
        got = (int(p.reason[i]), int(p.sequence[i]), int(p.timestamp[i]), int(p.ssrc[i]),
               got_payloads.get(i, b""), int(level[i]), int(voice[i]))
        assert got == want, (raw.hex(), got, want)


_elements = st.one_of(
    st.builds(level_element, st.integers(0, 127), st.booleans(), st.integers(1, 14)),
    st.binary(min_size=1, max_size=6), st.just(b"\x00"), st.just(b"\xf0"))


@st.composite
def rtp_like(draw) -> bytes:
    ext = draw(st.one_of(st.none(), st.lists(_elements, max_size=6).map(b"".join)))
    raw = packet(seq=draw(st.integers(0, 65535)), ts=draw(st.integers(0, 2**32 - 1)),
                 ssrc=draw(st.integers(0, 2**32 - 1)), pt=draw(st.integers(0, 127)),
                 csrcs=draw(st.lists(st.integers(0, 2**32 - 1), max_size=3)),
                 extension=ext, profile=draw(st.sampled_from([0xBEDE, 0x1000, 0x1005, 7])),
                 payload=draw(st.binary(max_size=8)), padding=draw(st.integers(0, 4)))
    cut = draw(st.integers(0, len(raw)))
    return raw if draw(st.booleans()) else raw[:cut]  # sometimes truncated anywhere


@settings(max_examples=600, deadline=None)
@given(st.lists(rtp_like(), max_size=8), st.integers(1, 14))
def test_structured_datagrams_parse_as_the_reference_does(datagrams, ext_id):
    check_against_reference(datagrams, ext_id)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 255))
def test_random_datagrams_never_raise_and_parse_as_the_reference_does(datagrams, ext_id):
    check_against_reference(datagrams, ext_id)
