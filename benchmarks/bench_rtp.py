"""The RTP ingest's cost per packet (pytest-benchmark; ``make bench-rtp``, and in
``make bench``): one round is one 20 ms tick of every source (rooms of 10), browser-like
packets (Opus payload, three header extensions with the RFC 6464 level among them).

- ``parse``: service/runtime/rtp.py alone (headers and levels of the batch of datagrams);
- ``opus_decode``: libopus (service/runtime/opus.py) decoding one 20 ms Opus packet for the VAD
  path, what a source without the level extension costs on top of the ingest;
- ``ingest``: what the server does with a tick's datagrams short of the socket: parse,
  place on the rooms' clocks, close the previous tick, and step it through the registry
  (decisions included). packets/s = sources / mean; the figure to hold against 50,000
  packets/s (1,000 participants at 20 ms) on one core. A round's packets complete their
  tick (20 ms steps), which closes in the same round: a round's time is the decision
  latency after the packet that completes a tick, short of the socket and of the wait for
  the server's next read (at most FLUSH_S, 5 ms); ``tick_p99_ms`` is its 99th percentile.
"""
from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

from service.runtime import opus, rtp
from service.runtime.rooms import RoomRegistry
from service.runtime.rtp_ingest import RtpIngest, RtpSource

PER_ROOM = 10
SOURCES = [10, 100, 1000, 2000]
TICKS = 200
"""Pre-built ticks of packets: 25 of warm-up and 170 timed rounds."""


def browser_packet(seq: int, ts: int, ssrc: int, level: int, voice: bool) -> bytes:
    """What Chrome sends for Opus: abs-send-time, the audio level, transport-wide cc."""
    ext = (b"\x32\x01\x02\x03" + bytes([0x10, (voice << 7) | level]) + b"\x51\x00\x07"
           + b"\x00\x00")  # padding to 12 bytes
    header = struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return header + struct.pack("!HH", rtp.ONE_BYTE_PROFILE, len(ext) // 4) + ext + bytes(60)


def ticks_of(n_sources: int, n_ticks: int = TICKS) -> list[list[bytes]]:
    rng = np.random.default_rng(1)
    offsets = rng.integers(0, 2**32, n_sources)
    out = []
    for k in range(n_ticks):
        talker = (k // 150) % PER_ROOM  # 3 s turns
        out.append([browser_packet(k, int(offsets[s]) + 960 * k, 10_000 + s,
                                   20 if s % PER_ROOM == talker else 65,
                                   s % PER_ROOM == talker) for s in range(n_sources)])
    return out


@pytest.mark.parametrize("n_sources", SOURCES)
def test_rtp_parse(benchmark, n_sources):
    datagrams = ticks_of(n_sources, 1)[0]

    def parse():
        p = rtp.parse(datagrams)
        return rtp.audio_levels(p, 1)

    level, voice = benchmark(parse)
    assert (level >= 0).all() and set(voice.tolist()) == {0, 1}
    benchmark.extra_info.update(packets=n_sources,
                                packets_per_s=n_sources / benchmark.stats.stats.mean)


@pytest.mark.parametrize("n_sources", SOURCES)
def test_rtp_ingest(benchmark, n_sources):
    sources = {10_000 + s: RtpSource(f"room-{s // PER_ROOM}", f"p{s % PER_ROOM}")
               for s in range(n_sources)}
    ingest = RtpIngest(sources)
    registry = RoomRegistry()
    ticks = ticks_of(n_sources)
    clock = itertools.count()
    steps = {"ticks": 0, "switches": 0}

    def one_tick():
        k = next(clock)
        now = k * 0.02
        ingest.receive(ticks[k], now)  # warm-up + rounds < TICKS: time only moves on
        for tenant, request in ingest.closed(now + 0.001).items():
            response = registry.process(request, now, tenant)
            steps["ticks"] += len(request.ticks)
            steps["switches"] += sum(e.HasField("switch") for e in response.events)

    for _ in range(25):  # rooms created, first switches made
        one_tick()
    benchmark.pedantic(one_tick, rounds=TICKS - 30, iterations=1)  # 25 + 170 < TICKS
    assert ingest.counts["late"] == 0 and ingest.counts["ok"] > 0
    # every round's tick closed in that round (the first one's in the second: no steps
    # were known yet)
    assert steps["ticks"] == (25 + TICKS - 30) * n_sources // PER_ROOM
    rounds = sorted(benchmark.stats.stats.data)
    benchmark.extra_info.update(packets=n_sources,
                                packets_per_s=n_sources / benchmark.stats.stats.mean,
                                us_per_packet=benchmark.stats.stats.mean / n_sources * 1e6,
                                tick_p99_ms=rounds[int(0.99 * (len(rounds) - 1))] * 1000)


@pytest.mark.skipif(not opus.available(), reason="libopus0 is not installed")
def test_opus_decode(benchmark):
    """One second of a voice-like tone as 50 Opus packets (VOIP, 20 ms), decoded in turn
    by one source's decoder; the figure is per packet."""
    import ctypes

    lib = ctypes.CDLL("libopus.so.0")
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_int32]
    error = ctypes.c_int()
    encoder = lib.opus_encoder_create(48000, 1, 2048, ctypes.byref(error))
    t = np.arange(48000) / 48000
    rng = np.random.default_rng(1)
    pcm = (8000 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
           + rng.normal(0, 300, len(t))).astype("<i2").tobytes()
    out = ctypes.create_string_buffer(1500)
    packets = []
    for k in range(50):
        n = lib.opus_encode(encoder, pcm[1920 * k: 1920 * (k + 1)], 960, out, len(out))
        packets.append(out.raw[:n])
    decoder = opus.Decoder()

    def decode_all():
        for payload in packets:
            decoder.decode(payload)

    benchmark(decode_all)
    per_packet = benchmark.stats.stats.mean / len(packets)
    benchmark.extra_info.update(us_per_packet=per_packet * 1e6,
                                packets_per_s=1 / per_packet,
                                bytes_per_packet=sum(map(len, packets)) / len(packets))
