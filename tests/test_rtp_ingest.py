"""service/runtime/rtp_ingest.py places each mapped source's RTP packets on its room's media clock
and closes 20 ms ticks that the registry steps like any gRPC tick. A synthetic wall clock
drives it; the decisions of a conversation sent as RTP equal those of the same levels sent
over gRPC."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.tuning import PROFILES
from service.runtime import rtp_ingest
from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry
from service.runtime.rtp_ingest import RtpIngest, RtpSource

from conftest import level_tick, script_levels, switches
from test_rtp import level_element, packet

ABC = ["a", "b", "c"]
SILENT_A = [("a", rtp_ingest.SILENCE_LEVEL, pb.VOICE_ACTIVITY_ABSENT)]
"""A tick where "a" sent nothing for DTX_MS: digital silence."""
TURNS = [("a", 0, 3000), ("b", 3400, 7000), ("c", 7300, 10000), ("a", 10400, 12000)]


def sources(offsets: dict[str, int], room="r", clock=48000) -> dict[int, RtpSource]:
    return {1000 + i: RtpSource(room, pid, clock_rate_hz=clock) for i, pid in enumerate(offsets)}


def rtp_of(tick: pb.RoomTick, ssrc_of: dict[str, int], first_ts: dict[str, int],
           clock=48000) -> list[bytes]:
    """The tick's levels as one RTP packet per participant (sequence = tick number)."""
    k = tick.timestamp_ms // 20
    out = []
    for a in tick.audio:
        ts = (first_ts[a.participant_id] + k * clock // 50) % 2**32
        ext = level_element(a.level.level, a.level.voice == pb.VOICE_ACTIVITY_PRESENT)
        out.append(packet(seq=(7 + k) % 65536, ts=ts, ssrc=ssrc_of[a.participant_id],
                          extension=ext))
    return out


def frames(ticks, roster=()) -> list[tuple[int, list[tuple[str, int, int]]]]:
    """(t_ms, [(participant, level, voice)]) of each tick, whichever form it has (the
    compact form's roster is sticky: ``roster`` is the one before these ticks)."""
    out = []
    for t in ticks:
        if t.levels.levels:
            roster = tuple(t.levels.roster) or roster
            out.append((t.timestamp_ms, [(p, b & 0x7F, b >> 7 and pb.VOICE_ACTIVITY_PRESENT
                                          or pb.VOICE_ACTIVITY_ABSENT)
                                         for p, b in zip(roster, t.levels.levels)]))
        else:
            out.append((t.timestamp_ms, [(a.participant_id, a.level.level, a.level.voice)
                                         for a in t.audio]))
    return out


def grpc_decisions(ticks: list[pb.RoomTick]) -> list[tuple[int, str]]:
    reg = RoomRegistry()
    return switches(reg.process(pb.StreamRequest(ticks=ticks)).events)


def test_a_conversation_over_rtp_decides_as_over_grpc():
    ticks = script_levels("r", TURNS, ABC, 12000)
    srcs = sources({p: 0 for p in ABC})
    ssrc_of = {s.participant_id: ssrc for ssrc, s in srcs.items()}
    # unrelated RTP clocks, one of them wrapping around 2^32 mid-call
    first_ts = {"a": 123456, "b": 2**32 - 48000 * 3, "c": 999_999_999}
    ingest = RtpIngest(srcs)
    reg = RoomRegistry()
    got = []
    rng = random.Random(7)
    for tick in ticks:
        now = tick.timestamp_ms / 1000
        datagrams = rtp_of(tick, ssrc_of, first_ts)
        rng.shuffle(datagrams)  # arrival order within a tick does not matter
        ingest.receive(datagrams, now + rng.uniform(0, 0.004))  # nor a little jitter
        for tenant, req in ingest.closed(now + 0.005).items():
            got += switches(reg.process(req, tenant=tenant).events)
    for tenant, req in ingest.closed(12.5).items():  # the last ticks, by the wall clock
        got += switches(reg.process(req, tenant=tenant).events)
    assert got == grpc_decisions(ticks)
    assert [s for _, s in got] == ["a", "b", "c", "a"]
    assert ingest.counts["ok"] == 3 * len(ticks) and ingest.counts["late"] == 0


def test_ticks_close_when_every_source_has_sent_them_or_after_the_jitter_allowance():
    """A source's packet duration comes from its timestamp steps: once its packet for a
    tick is in and the next will start in a later one, it has nothing more for it."""
    srcs = sources({"a": 0, "b": 0})
    ingest = RtpIngest(srcs)
    ingest.receive([packet(ssrc=1000, ts=0, extension=level_element(30, True)),
                    packet(ssrc=1001, ts=5000, extension=level_element(70, False))], 0.0)
    assert ingest.closed(0.001) == {}  # tick 0 may still get packets (no step known yet)
    ingest.receive([packet(ssrc=1000, ts=960, seq=2, extension=level_element(31, True))], 0.02)
    assert ingest.closed(0.021) == {}  # b has not sent tick 0's last packet yet
    ingest.receive([packet(ssrc=1001, ts=5960, seq=2, extension=level_element(71, False))],
                   0.022)
    # both have sent tick 1, and their 20 ms steps say their next packets are for tick 2:
    # ticks 0 and 1 close at once, not a packet later
    (req,) = ingest.closed(0.023).values()
    assert frames(req.ticks) == [(0, [("a", 30, pb.VOICE_ACTIVITY_PRESENT),
                                      ("b", 70, pb.VOICE_ACTIVITY_ABSENT)]),
                                 (20, [("a", 31, pb.VOICE_ACTIVITY_PRESENT),
                                       ("b", 71, pb.VOICE_ACTIVITY_ABSENT)])]
    assert list(req.ticks[0].levels.roster) == ["a", "b"]  # the compact form, roster first
    # b goes quiet on the wire: tick 2 closes on the wall clock, JITTER_MS after its end
    ingest.receive([packet(ssrc=1000, ts=1920, seq=3, extension=level_element(32, True))],
                   0.04)
    assert ingest.closed(0.04 + 0.02 + rtp_ingest.JITTER_MS / 1000 - 0.002) == {}
    (req,) = ingest.closed(0.06 + rtp_ingest.JITTER_MS / 1000 + 0.001).values()
    assert [t.timestamp_ms for t in req.ticks] == [40]
    # a packet for a closed tick is late
    ingest.receive([packet(ssrc=1001, ts=5960 + 960, seq=3, extension=level_element(71, False))],
                   0.2)
    assert ingest.counts["late"] == 1


def test_ten_ms_packets_close_their_tick_with_the_second():
    ingest = RtpIngest(sources({"a": 0}))
    for k in range(3):  # 10 ms packets: 480 timestamp units apart
        ingest.receive([packet(ssrc=1000, ts=480 * k, seq=k,
                               extension=level_element(40 + k, True))], 0.01 * k)
    (req,) = ingest.closed(0.021).values()
    # tick 0 (both its packets, the louder kept) closed; tick 1 waits for its second
    assert frames(req.ticks) == [(0, [("a", 40, pb.VOICE_ACTIVITY_PRESENT)])]


def test_two_packets_in_one_tick_keep_the_louder_and_voiced():
    ingest = RtpIngest(sources({"a": 0}))
    ingest.receive([packet(ssrc=1000, ts=0, extension=level_element(40, False)),
                    packet(ssrc=1000, ts=480, seq=2, extension=level_element(20, True))], 0.0)
    (req,) = ingest.closed(1.0).values()
    assert frames(req.ticks)[0] == (0, [("a", 20, pb.VOICE_ACTIVITY_PRESENT)])


def test_a_timestamp_jump_reanchors_and_a_reordered_packet_is_counted():
    ingest = RtpIngest(sources({"a": 0}))
    ingest.receive([packet(ssrc=1000, ts=0, seq=10, extension=level_element(30, True))], 0.0)
    ingest.receive([packet(ssrc=1000, ts=960, seq=12, extension=level_element(30, True))],
                   0.02)
    ingest.receive([packet(ssrc=1000, ts=1920, seq=11, extension=level_element(30, True))],
                   0.021)
    assert ingest.counts["reordered"] == 1
    # the sender restarts its clock: placed by arrival, not 20 hours away
    ingest.receive([packet(ssrc=1000, ts=2**31, seq=13, extension=level_element(30, True))],
                   0.06)
    assert ingest.counts["reanchored"] == 1
    (req,) = ingest.closed(5.0).values()
    assert [t for t, f in frames(req.ticks) if f != SILENT_A] == [0, 20, 40, 60]


def test_unknown_ssrcs_rtcp_and_garbage_are_counted_and_change_nothing():
    ingest = RtpIngest(sources({"a": 0}))
    sr = bytes([0x80, 200, 0, 6]) + bytes(24)
    ingest.receive([packet(ssrc=77, extension=level_element(30, True)), sr, b"\x01\x02"],
                   0.0)
    assert ingest.closed(9.0) == {}
    assert (ingest.counts["unknown_ssrc"], ingest.counts["rtcp"],
            ingest.counts["too_short"], ingest.counts["ok"]) == (1, 1, 1, 0)


def test_a_source_silent_on_the_wire_leaves_and_comes_back():
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    ingest.receive([packet(ssrc=1000, ts=0, extension=level_element(30, True)),
                    packet(ssrc=1001, ts=0, extension=level_element(70, False))], 0.0)
    ingest.closed(1.0)
    for i in range(1, 600):  # a keeps talking for 12 s, b sends nothing
        ingest.receive([packet(ssrc=1000, ts=960 * i, seq=i,
                               extension=level_element(30, True))], 0.02 * i)
    reqs = [ingest.closed(0.02 * i + 0.1) for i in range(1, 600)]
    leaves = [(t.timestamp_ms, e.participant_id) for r in reqs for q in r.values()
              for t in q.ticks for e in t.events]
    assert len(leaves) == 1 and leaves[0][1] == "b"
    leave_ms = rtp_ingest.LEAVE_AFTER_S * 1000
    assert leave_ms - 100 <= leaves[0][0] <= leave_ms + rtp_ingest.LEAVE_CHECK_S * 1000 + 100


def test_unmap_makes_its_participant_leave():
    ingest = RtpIngest(sources({"a": 0}))
    ingest.receive([packet(ssrc=1000, ts=0, extension=level_element(30, True))], 0.0)
    ingest.unmap(1000)
    (req,) = ingest.closed(1.0).values()
    assert [(e.participant_id, e.type) for t in req.ticks for e in t.events] == [
        ("a", pb.ParticipantEventType.PARTICIPANT_EVENT_TYPE_LEAVE)]


def test_a_sender_without_voice_activity_gives_levels_only():
    ingest = RtpIngest({1000: RtpSource("r", "a", voice_activity=False)})
    ingest.receive([packet(ssrc=1000, ts=0, extension=level_element(20, False))], 0.0)
    (req,) = ingest.closed(1.0).values()
    a = req.ticks[0].audio[0]  # no V bit to send: not the compact form
    assert (a.level.level, a.level.voice) == (20, pb.VOICE_ACTIVITY_UNSPECIFIED)


def test_the_map_file(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [
        {"ssrc": 1, "room": "r", "participant": "p", "tenant": "t", "clock_rate_hz": 8000,
         "audio_level_id": 3, "voice_activity": False},
        {"ssrc": 2, "room": "r", "participant": "q", "clock_rate_hz": 16000, "l16": True}]}))
    assert rtp_ingest.load_map(str(path)) == {1: RtpSource("r", "p", "t", 8000, 3, False),
                                              2: RtpSource("r", "q", "", 16000, l16=True)}


@pytest.mark.parametrize("doc, message", [
    ("[]", "expected {\"sources\""),
    ('{"sources": [{"ssrc": -1, "room": "r", "participant": "p"}]}', "sources[0].ssrc"),
    ('{"sources": [{"ssrc": 1, "room": "", "participant": "p"}]}', "sources[0].room"),
    ('{"sources": [{"ssrc": 1, "room": "r", "participant": "p", "clock_rate_hz": 5}]}',
     "clock_rate_hz"),
    ('{"sources": [{"ssrc": 1, "room": "r", "participant": "p", "colour": 1}]}',
     "unknown field 'colour'"),
    ('{"sources": [{"ssrc": 1, "room": "r", "participant": "p"},'
     ' {"ssrc": 1, "room": "r", "participant": "q"}]}', "mapped twice"),
    ('{"sources": [{"ssrc": 1, "room": "r", "participant": "p", "l16": true,'
     ' "clock_rate_hz": 44100}]}', "L16 at one of"),
    ('{"sources": [{"ssrc": 1, "room": "r", "participant": "p", "l16": 1}]}', "sources[0].l16"),
    ("{", "map.json"),
])
def test_a_bad_map_file_names_the_entry_and_field(tmp_path, doc, message):
    path = tmp_path / "map.json"
    path.write_text(doc)
    with pytest.raises(ValueError, match="map.json"):
        try:
            rtp_ingest.load_map(str(path))
        except ValueError as e:
            assert message in str(e)
            raise


# --------------------------------------------------------------------- through a server

def test_rtp_datagrams_to_a_running_server_switch_its_rooms(tmp_path):
    """A real server with ``rtp_port``: a short conversation sent over UDP on loopback in
    real time; Watch sees the switches the same levels make over gRPC (within a tick: each
    source is placed on the room's clock by its first packet's arrival), and the metrics
    count the packets; a datagram flood of garbage changes nothing."""
    import socket
    import time

    from service.client import Client

    from conftest import ServerThread, test_config, watching

    turns = [("a", 0, 1200), ("b", 1500, 3000)]
    ticks = script_levels("rtp-room", turns, ["a", "b"], 3400)
    srcs = {1000: RtpSource("rtp-room", "a"), 1001: RtpSource("rtp-room", "b")}
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [
        {"ssrc": ssrc, "room": s.room_id, "participant": s.participant_id}
        for ssrc, s in srcs.items()]}))
    with ServerThread(test_config(rtp_port=0, rtp_map=str(path))) as server:
        port = server.running.rtp.port
        with Client(server.target) as client, watching(client, "rtp-room") as seen:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                start = time.monotonic()
                for i, tick in enumerate(ticks):
                    for raw in rtp_of(tick, {"a": 1000, "b": 1001}, {"a": 5, "b": 2**31}):
                        sock.sendto(raw, ("127.0.0.1", port))
                    if i % 10 == 0:
                        sock.sendto(b"\x00garbage", ("127.0.0.1", port))
                    time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
            time.sleep(0.3)
        counts = dict(server.running.rtp.ingest.counts)
        registry = server.running.metrics.registry
        exported = {o: registry.get_sample_value("speakerswitch_rtp_packets_total",
                                                 {"outcome": o}) for o in ("ok", "too_short")}
        lost = (server.running.rtp.ingest.lost,
                registry.get_sample_value("speakerswitch_rtp_lost_packets_total"))
        jitter_observed = registry.get_sample_value("speakerswitch_rtp_jitter_seconds_count")
    got = [(e.timestamp_ms, e.switch.speaker_id) for e in seen if e.HasField("switch")]
    want = grpc_decisions(ticks)
    assert [s for _, s in got] == [s for _, s in want] == ["a", "b"]
    assert all(abs(g - w) <= 20 for (g, _), (w, _) in zip(got, want)), (got, want)
    assert counts["ok"] == 2 * len(ticks) and counts["too_short"] == len(ticks[::10])
    assert exported == {"ok": counts["ok"], "too_short": counts["too_short"]}
    assert lost[1] == lost[0]
    assert jitter_observed >= 2 * 2  # each source, once a second for 3.4 s


def test_the_compact_form_sends_its_roster_when_it_changes_and_the_other_form_on_a_gap():
    ingest = RtpIngest(sources({"a": 0, "b": 0, "c": 0}))
    sent = []

    def tick(i, who):
        ingest.receive([packet(ssrc=1000 + "abc".index(p), ts=960 * i, seq=i,
                               extension=level_element(20 + i, True)) for p in who],
                       0.02 * i)
        for req in ingest.closed(0.02 * i + 0.07).values():  # past the jitter allowance
            sent.extend(req.ticks)

    for i, who in enumerate(["ab", "ab", "abc", "abc", "ac", "abc"]):
        tick(i, who)
    tick(6, "abc")
    rosters = [list(t.levels.roster) for t in sent]
    forms = ["levels" if t.levels.levels else "audio" for t in sent]
    # tick 4 lacks b's level: b is in the room, so the other form, and no roster change
    assert forms == ["levels", "levels", "levels", "levels", "audio", "levels", "levels"]
    assert rosters == [["a", "b"], [], ["a", "b", "c"], [], [], [], []]
    assert [[p for p, _, _ in f] for _, f in frames(sent)] == [
        ["a", "b"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c"], ["a", "c"],
        ["a", "b", "c"], ["a", "b", "c"]]
    # the registry reads it as it was meant: b, missing at 80 ms, is not made silent
    reg = RoomRegistry()
    assert not reg.process(pb.StreamRequest(ticks=sent)).rejections


def test_100k_random_datagrams_change_no_room():
    """A flood of random datagrams (and of packets with unmapped SSRCs, and of mapped
    SSRCs' headers with garbage after them) between a room's packets: the requests the
    ingest closes, and so every decision, are byte-identical to those without it."""
    ticks = script_levels("r", TURNS, ABC, 4000)
    srcs = sources({p: 0 for p in ABC})
    ssrc_of = {s.participant_id: ssrc for ssrc, s in srcs.items()}
    first_ts = {"a": 1, "b": 2, "c": 3}
    rng = np.random.default_rng(5)
    per_tick = 100_000 // len(ticks) + 1

    def run(flood: bool) -> list[bytes]:
        ingest = RtpIngest(srcs)
        out = []
        for tick in ticks:
            now = tick.timestamp_ms / 1000
            datagrams = rtp_of(tick, ssrc_of, first_ts)
            if flood:
                junk = [rng.bytes(int(n)) for n in rng.integers(0, 80, per_tick)]
                # some that parse: version 2, unmapped SSRCs or a mapped one truncated
                for j in range(0, per_tick, 7):
                    junk[j] = b"\x80" + junk[j][1:2] + bytes(2) + rng.bytes(8) + junk[j][12:]
                datagrams = junk[: per_tick // 2] + datagrams + junk[per_tick // 2:]
            ingest.receive(datagrams, now)
            out += [r.SerializeToString() for r in ingest.closed(now + 0.005).values()]
        out += [r.SerializeToString() for r in ingest.closed(4.2).values()]
        return out

    clean = run(False)
    assert len(clean) > 100
    assert run(True) == clean


def decide_both_ways(srcs: dict[int, RtpSource], n_ticks: int, tick_k) -> None:
    """``tick_k(k)`` gives tick k as (datagrams, the same audio as a gRPC RoomTick): the
    ingest's decisions (packets received at k * 20 ms) must be the gRPC ones, p1, p2 and p3
    taking the floor in turn, with no packet late or without its audio."""
    ingest = RtpIngest(srcs)
    reg, ref = RoomRegistry(), RoomRegistry()
    got, want = [], []
    for k in range(n_ticks):
        datagrams, tick = tick_k(k)
        ingest.receive(datagrams, k * 0.02)
        for tenant, req in ingest.closed(k * 0.02 + 0.001).items():
            got += switches(reg.process(req, tenant=tenant).events)
        want += switches(ref.process(pb.StreamRequest(ticks=[tick])).events)
    for tenant, req in ingest.closed(n_ticks * 0.02 + 0.2).items():
        got += switches(reg.process(req, tenant=tenant).events)
    assert got == want
    assert [s for _, s in got][:3] == ["p1", "p2", "p3"]
    assert ingest.counts["no_level"] == 0 and ingest.counts["late"] == 0


def test_g711_without_levels_goes_to_the_vad_path_and_decides_as_pcm_over_grpc():
    """A telephone gateway's PCMU (payload type 0, 8 kHz, no audio level): decoded and
    stepped as 20 ms PCM frames; the same decoded audio sent over gRPC makes the same
    decisions. One participant sends PCMA (type 8), in 10 ms packets."""
    from service.runtime import g711
    from service.tools import sample

    tracks, _ = sample.conversation(rate=8000)
    n_ticks = 11_000 // 20
    law = {"p1": (0, g711.MU_LAW), "p2": (8, g711.A_LAW), "p3": (0, g711.MU_LAW)}
    codes = {}
    for pid, x in tracks.items():  # encode: the nearest code word of each sample
        table = law[pid][1]
        order = np.argsort(table)
        pcm = np.clip(np.round(x[: n_ticks * 160] * 32767), -32768, 32767)
        at = np.clip(np.searchsorted(table[order], pcm), 1, 255)
        nearer = np.where(np.abs(table[order][at - 1] - pcm) <= np.abs(table[order][at] - pcm),
                          at - 1, at)
        codes[pid] = order[nearer].astype(np.uint8).tobytes()
    srcs = {100 + i: RtpSource("tel", pid, clock_rate_hz=8000)
            for i, pid in enumerate(sorted(tracks))}

    def tick_k(k):
        datagrams, tick = [], pb.RoomTick(room_id="tel", timestamp_ms=20 * k, duration_ms=20)
        for ssrc, src in srcs.items():
            pt, table = law[src.participant_id]
            words = codes[src.participant_id][160 * k: 160 * (k + 1)]
            parts = [words] if pt == 0 else [words[:80], words[80:]]  # PCMA: 10 ms packets
            for j, part in enumerate(parts):
                datagrams.append(packet(ssrc=ssrc, pt=pt, seq=2 * k + j, ts=160 * k + 80 * j,
                                        payload=part))
            tick.audio.add(participant_id=src.participant_id, pcm=pb.PcmFrame(
                samples=g711.decode(words, table), sample_rate_hz=8000))
        return datagrams, tick

    decide_both_ways(srcs, n_ticks, tick_k)


def test_l16_without_levels_goes_to_the_vad_path_and_decides_as_pcm_over_grpc():
    """L16 (RFC 3551: big-endian int16) from sources mapped with ``l16``: byte-swapped and
    stepped as 20 ms PCM frames at the source's clock rate; the same audio sent over gRPC
    makes the same decisions. One participant sends 10 ms packets; one, at 8 kHz, loses a
    packet now and then (no frame of it in that tick; silence over gRPC, the same decisions)."""
    from service.tools import sample

    rates = {"p1": 16000, "p2": 16000, "p3": 8000}
    tracks = {r: sample.conversation(rate=r)[0] for r in set(rates.values())}
    n_ticks = 11_000 // 20
    srcs = {200 + i: RtpSource("lin", pid, clock_rate_hz=rates[pid], l16=True)
            for i, pid in enumerate(sorted(rates))}
    pcm = {pid: np.clip(np.round(tracks[r][pid][: n_ticks * r // 50] * 32767), -32768,
                        32767).astype("<i2") for pid, r in rates.items()}

    def tick_k(k):
        datagrams, tick = [], pb.RoomTick(room_id="lin", timestamp_ms=20 * k, duration_ms=20)
        for ssrc, src in srcs.items():
            pid, n = src.participant_id, src.clock_rate_hz // 50
            x = pcm[pid][n * k: n * (k + 1)]
            lost = pid == "p3" and k % 37 == 5
            parts = [x] if pid != "p2" else [x[: n // 2], x[n // 2:]]
            for j, part in enumerate(parts):
                if not lost:
                    datagrams.append(packet(ssrc=ssrc, pt=96, seq=2 * k + j,
                                            ts=n * k + n // 2 * j,
                                            payload=part.astype(">i2").tobytes()))
            sent = np.zeros_like(x) if lost else x
            tick.audio.add(participant_id=pid, pcm=pb.PcmFrame(
                samples=sent.tobytes(), sample_rate_hz=src.clock_rate_hz))
        return datagrams, tick

    decide_both_ways(srcs, n_ticks, tick_k)


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_the_rtp_port_listens_on_ipv6_loopback(tmp_path, host):
    """``--rtp-host ::1`` (bracketed or not): packets sent over IPv6 reach the ingest."""
    import socket
    import time

    from conftest import ServerThread, test_config

    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [{"ssrc": 77, "room": "v6", "participant": "a"}]}))
    with ServerThread(test_config(rtp_port=0, rtp_host=host, rtp_map=str(path))) as server:
        port = server.running.rtp.port
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            for k in range(5):
                sock.sendto(packet(ssrc=77, seq=k, ts=960 * k, extension=level_element(30, True)),
                            ("::1", port))
        deadline = time.monotonic() + 5
        while server.running.rtp.ingest.counts["ok"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.running.rtp.ingest.counts["ok"] == 5


def _send(ingest, ssrc, k, level, voice, seq0=0):
    """Tick ``k``'s packet of ``ssrc`` (48 kHz, sequence = tick), arriving on time."""
    ingest.receive([packet(ssrc=ssrc, ts=960 * k, seq=seq0 + k,
                           extension=level_element(level, voice))], 0.02 * k + 0.001)


def test_a_source_without_packets_for_60_ms_is_silent_and_shorter_gaps_are_loss():
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    ticks = []
    for k in range(30):
        if not 10 <= k < 20:  # a goes into DTX for 200 ms: no packets at all
            _send(ingest, 1000, k, 20, True)
        _send(ingest, 1001, k, 70, False)
        for req in ingest.closed(0.02 * k + 0.002).values():
            ticks += req.ticks
    by_tick = dict(frames(ticks))
    talk = ("a", 20, pb.VOICE_ACTIVITY_PRESENT)
    b = ("b", 70, pb.VOICE_ACTIVITY_ABSENT)
    assert by_tick[180] == [talk, b]
    # 20 and 40 ms without packets: loss (a has no frame, the engine keeps its state)
    assert by_tick[200] == by_tick[220] == [b]
    # 60 ms and more: digital silence, until its packets come back
    assert [by_tick[t] for t in range(240, 400, 20)] == [SILENT_A + [b]] * 8
    assert by_tick[400] == [talk, b]
    assert sorted(by_tick) == list(range(0, 600, 20))  # every tick, once
    assert ingest.counts["late"] == 0


def test_a_source_in_dtx_gets_its_quiet_level_and_a_muted_one_silence():
    """DTX ticks carry what the source sent while quiet (its unvoiced packets' level, the
    quietest, relaxing slowly), not digital silence: a holder pausing in DTX is not muted.
    A muted track's packets are digital silence, and so are its DTX ticks."""
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    ticks = []
    for k in range(40):
        if k < 10:  # a talks, then sends its room's noise (two levels), then goes into DTX
            _send(ingest, 1000, k, 20, True)
        elif k < 20:
            _send(ingest, 1000, k, 66 if k % 2 else 64, False)
        _send(ingest, 1001, k, 127 if k >= 5 else 70, False)  # b mutes at 100 ms
        for req in ingest.closed(0.02 * k + 0.002).values():
            ticks += req.ticks
    by_tick = dict(frames(ticks))
    b_muted = ("b", 127, pb.VOICE_ACTIVITY_ABSENT)
    assert by_tick[380] == [("a", 66, pb.VOICE_ACTIVITY_ABSENT), b_muted]
    # 60 ms after a's last packet: its quietest level, 66 less 0.02 dB for each of the
    # 9 packets since its first 66 (rounded)
    assert [by_tick[t] for t in range(460, 720, 20)] == \
        [[("a", round(66 - 0.02 * 8), pb.VOICE_ACTIVITY_ABSENT), b_muted]] * 13


def test_a_holder_pausing_in_dtx_keeps_its_hold():
    """a talks 1.5 s, sends 200 ms of its room's noise, goes into DTX; b talks 520-640 ms
    into the pause. Digital silence in DTX made a count as muted after silent_hold_ms
    (500 ms), and b was shown once it had talked min_speech_ms (at 2140 ms); a quiet level
    keeps a's hold: b is shown at its end, 700 ms after a's last word."""
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    reg = RoomRegistry()
    events = []
    for k in range(175):
        if k < 75:
            _send(ingest, 1000, k, 20 + 6 * (k % 3), True)   # a talks
        elif k < 85:
            _send(ingest, 1000, k, 70, False)                # then its noise, then DTX
        talking_b = 101 <= k < 107                            # 520-640 ms after a's last word
        _send(ingest, 1001, k, 25 + 6 * (k % 2) if talking_b else 72, talking_b)
        for tenant, req in ingest.closed(0.02 * k + 0.002).items():
            events += reg.process(req, tenant=tenant).events
    assert switches(events) == [(120, "a"), (1500 + PROFILES["meeting"].hold_ms, "b")]


def test_a_talker_going_into_dtx_stops_speaking_when_its_whole_room_is_quiet():
    """Everyone in the room stops sending (both in DTX): no tick would ever reach the
    engine, and the last talker would stay speaking on its last level."""
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    reg = RoomRegistry()
    events = []
    for k in range(100):  # a talks for 2 s, b is quiet; then neither sends anything
        _send(ingest, 1000, k, 20, True)
        _send(ingest, 1001, k, 70, False)
        for tenant, req in ingest.closed(0.02 * k + 0.002).items():
            events += reg.process(req, tenant=tenant).events
    for i in range(1, 50):  # a second of wall clock with no packets
        for tenant, req in ingest.closed(2.0 + 0.02 * i).items():
            events += reg.process(req, tenant=tenant).events
    speaking = [(e.timestamp_ms, e.speaking_changed.speaking) for e in events
                if e.HasField("speaking_changed") and e.speaking_changed.participant_id == "a"]
    assert speaking[0][1] is True
    # the last packet covered 1980..2000 ms; 2000..2060 ms without packets is silence,
    # and digital silence stops a speaker at once: at the end of that tick
    assert speaking[-1] == ((99 + rtp_ingest.DTX_TICKS + 1) * 20, False)
    # the same as a gRPC client sending that silence itself
    ticks = [level_tick("r", 20 * k, {"a": 20, "b": 70}, {"a": 1, "b": 0}, duration_ms=20)
             for k in range(100)]
    ticks += [level_tick("r", 20 * k, {"a": 127, "b": 127}, {"a": 0, "b": 0}, duration_ms=20)
              for k in range(99 + rtp_ingest.DTX_TICKS, 140)]
    grpc = RoomRegistry().process(pb.StreamRequest(ticks=ticks)).events
    assert speaking == [(e.timestamp_ms, e.speaking_changed.speaking) for e in grpc
                        if e.HasField("speaking_changed")
                        and e.speaking_changed.participant_id == "a"]


def test_a_g711_source_in_dtx_gets_ticks_of_zeros():
    """A PCM source's silence is PCM: 20 ms of zero samples at its rate, for the VAD."""
    ingest = RtpIngest({1000: RtpSource("r", "a", clock_rate_hz=8000)})
    for k in range(2):  # PCMU 0x70: a quiet but nonzero sample
        ingest.receive([packet(ssrc=1000, pt=0, seq=k, ts=160 * k, payload=b"\x70" * 160)],
                       0.02 * k)
    (req,) = ingest.closed(0.2).values()
    got = [(t.timestamp_ms, t.audio[0].pcm.sample_rate_hz, set(t.audio[0].pcm.samples))
           for t in req.ticks]
    assert [g[0] for g in got] == [0, 20] + [20 * k for k in range(1 + rtp_ingest.DTX_TICKS, 7)]
    assert all(rate == 8000 for _, rate, _ in got)
    assert got[1][2] != {0} and all(s == {0} for _, _, s in got[2:])
    assert all(len(t.audio[0].pcm.samples) == 320 for t in req.ticks)


def _one(ingest, seq, t_s, ssrc=1000, ts=None, level=40):
    ingest.receive([packet(ssrc=ssrc, seq=seq % 2**16, ts=(960 * seq if ts is None else ts)
                           % 2**32, extension=level_element(level, True))], t_s)


def test_reordered_duplicate_and_lost_packets_are_counted_exactly():
    ingest = RtpIngest(sources({"a": 0}))
    for seq in (10, 11, 13, 12, 13, 12, 16, 15):
        _one(ingest, seq, 0.02 * seq)
    assert (ingest.counts["reordered"], ingest.counts["duplicate"], ingest.lost) == (2, 2, 0)
    # 84 ahead: 14 and 17..36 are out of the 64-packet window, unreceived: lost
    _one(ingest, 100, 2.0)
    assert ingest.lost == 1 + 20
    # older than the window: reordered (and already counted lost); its timestamp is the
    # newest's, as one 1.7 s off the room's clock would re-anchor the stream
    _one(ingest, 14, 2.0, ts=960 * 100)
    assert ingest.counts["reordered"] == 3 and ingest.counts["duplicate"] == 2
    ingest.unmap(1000)  # the end of the stream: 37..99 never came
    assert ingest.lost == 1 + 20 + 63
    assert ingest.counts["ok"] == 10


def test_sequence_numbers_wrap_and_a_restart_is_no_loss():
    ingest = RtpIngest(sources({"a": 0}))
    for i, seq in enumerate((65533, 65534, 65535, 1, 0, 1)):  # 0 comes late, 1 twice
        _one(ingest, seq, 0.02 * i, ts=960 * i)
    assert (ingest.counts["reordered"], ingest.counts["duplicate"], ingest.lost) == (1, 1, 0)
    _one(ingest, 3, 0.12, ts=960 * 6)  # 2 is missing ...
    # ... then the sender restarts its sequence numbers (a jump, twice in a row): the
    # packets between are not lost, the hole before the jump is
    _one(ingest, 40000, 0.14, ts=960 * 7)
    _one(ingest, 40001, 0.16, ts=960 * 8)
    assert ingest.lost == 1
    for i, seq in enumerate((40002, 40003, 40005), start=9):
        _one(ingest, seq, 0.02 * i, ts=960 * i)
    assert ingest.lost == 1 and ingest.counts["reordered"] == 1
    ingest.unmap(1000)
    assert ingest.lost == 2  # 40004


@pytest.mark.parametrize("clock", [48000, 8000])
def test_interarrival_jitter_as_rfc_3550_defines_it(clock):
    """J += (|D| - J) / 16, D the difference of (arrival - RTP timestamp) of consecutive
    packets, in timestamp units; the same arrivals give the same ms at any clock."""
    ingest = RtpIngest(sources({"a": 0}, clock=clock))
    step = clock // 50
    for seq, arrival in enumerate((0.0, 0.030, 0.040, 0.060)):
        _one(ingest, seq, arrival, ts=step * seq)
    # transits 0, +10, 0, 0 ms: J = 10/16 = 0.625, then 0.625 + (10 - 0.625)/16, then * 15/16
    j = (0.625 + (10 - 0.625) / 16) * 15 / 16
    assert ingest.jitter_ms(1000) == pytest.approx(j, rel=1e-9)
    _one(ingest, 3, 0.5, ts=step * 3)  # a duplicate does not count
    assert ingest.jitter_ms(1000) == pytest.approx(j, rel=1e-9)
    ingest.closed(1.0)  # the once-a-second look: one observation per source, in seconds
    assert ingest.jitter_samples == [pytest.approx(j / 1000, rel=1e-9)]
    ingest.closed(1.5)
    assert len(ingest.jitter_samples) == 1  # not yet a second later


def test_arrival_times_not_the_batch_time_make_the_jitter():
    """The server reads datagrams every 5 ms; each one's own arrival time is used."""
    steady, batched = RtpIngest(sources({"a": 0})), RtpIngest(sources({"a": 0}))
    datagrams = [packet(ssrc=1000, seq=k, ts=960 * k, extension=level_element(40, True))
                 for k in range(50)]
    steady.receive(datagrams, 1.0, [0.02 * k for k in range(50)])
    for k in range(0, 50, 5):  # five packets arrive per batch, read at one time
        batched.receive(datagrams[k:k + 5], 0.02 * (k + 4))
    assert steady.jitter_ms(1000) == pytest.approx(0.0, abs=1e-9)
    assert batched.jitter_ms(1000) > 5.0


def test_a_source_mapped_by_its_sender_is_heard_whatever_its_ssrc():
    """For a forwarder that cannot set its SSRCs: the (host, port) it sends from is who."""
    ingest = RtpIngest({("10.0.0.5", 40000): RtpSource("r", "caller"),
                        ("", 40002): RtpSource("r", "any-host"),
                        1000: RtpSource("r", "by-ssrc")})
    ingest.receive([packet(ssrc=1, seq=0, ts=0, extension=level_element(20, True)),
                    packet(ssrc=2, seq=0, ts=0, extension=level_element(30, True)),
                    packet(ssrc=1000, seq=0, ts=0, extension=level_element(40, True)),
                    packet(ssrc=1000, seq=1, ts=0, extension=level_element(50, True)),
                    packet(ssrc=3, seq=0, ts=0, extension=level_element(60, True))], 0.0,
                   senders=[("10.0.0.5", 40000), ("192.0.2.9", 40002), ("10.0.0.5", 50000),
                            ("10.0.0.5", 40002, 0, 0),  # any host: IPv6 senders too
                            ("10.0.0.6", 40000)])       # another host: not the caller
    # the caller's sender restarts with a new SSRC: still the caller
    ingest.receive([packet(ssrc=99, seq=1, ts=960, extension=level_element(21, True))],
                   0.02, senders=[("10.0.0.5", 40000)])
    (req,) = ingest.closed(0.1).values()
    assert frames(req.ticks) == [(0, [("caller", 20, pb.VOICE_ACTIVITY_PRESENT),
                                      ("any-host", 30, pb.VOICE_ACTIVITY_PRESENT),
                                      ("by-ssrc", 40, pb.VOICE_ACTIVITY_PRESENT)]),
                                 (20, [("caller", 21, pb.VOICE_ACTIVITY_PRESENT)])]
    # 40002's second packet was "any-host" too (the same tick, so the louder: 30); 3 from
    # 10.0.0.6 is mapped neither by sender nor by SSRC
    assert ingest.counts["unknown_ssrc"] == 1
    # the caller's IPv4 address as a dual-stack IPv6 socket reports it
    ingest.receive([packet(ssrc=5, seq=2, ts=1920, extension=level_element(22, True))],
                   0.04, senders=[("::ffff:10.0.0.5", 40000, 0, 0)])
    assert ingest.counts["unknown_ssrc"] == 1
    assert ingest.unmap(("", 40002)).participant_id == "any-host"
    ingest.receive([packet(ssrc=2, seq=5, ts=0, extension=level_element(30, True))], 0.06,
                   senders=[("192.0.2.9", 40002)])
    assert ingest.counts["unknown_ssrc"] == 2


def test_the_map_file_maps_by_sender(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [
        {"source_port": 40000, "source_host": "[::1]", "room": "r", "participant": "a",
         "clock_rate_hz": 8000},
        {"source_port": 40002, "room": "r", "participant": "b"},
        {"ssrc": 40000, "room": "r", "participant": "c"}]}))
    got = rtp_ingest.load_map(str(path))
    assert {k: v.participant_id for k, v in got.items()} == {
        ("::1", 40000): "a", ("", 40002): "b", 40000: "c"}


@pytest.mark.parametrize("entry, message", [
    ({"ssrc": 1, "source_port": 4000}, "sources[0]: one of ssrc or source_port"),
    ({}, "sources[0]: one of ssrc or source_port"),
    ({"source_port": 70000}, "sources[0].source_port: 1..65535"),
    ({"source_port": 0}, "sources[0].source_port: 1..65535"),
    ({"source_port": 4000, "source_host": "media.example"},
     "sources[0].source_host: an IP address"),
    ({"ssrc": 1, "source_host": "10.0.0.1"}, "sources[0].source_host: only with source_port"),
])
def test_a_bad_sender_mapping_names_the_field(tmp_path, entry, message):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [{"room": "r", "participant": "p", **entry}]}))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rtp_ingest.load_map(str(path))


def test_a_sender_mapped_twice_in_the_file_is_refused(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"sources": [
        {"source_port": 4000, "source_host": "::1", "room": "r", "participant": "p"},
        {"source_port": 4000, "source_host": "0:0::1", "room": "r", "participant": "q"}]}))
    with pytest.raises(ValueError, match=r"sources\[1\].source_port: \[::1\]:4000 is "
                                         "mapped twice"):
        rtp_ingest.load_map(str(path))


def test_several_workers_with_the_rtp_port_are_refused_in_one_line(capsys):
    """SO_REUSEPORT would spread a room's senders over processes (docs/rtp.md)."""
    from service import cli

    code = cli.main(["serve", "--workers", "2", "--port", "50999", "--rtp-port", "0",
                     "--insecure-no-auth"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "rtp_port: the RTP ingest needs workers = 1" in err[0]


def _opus_encoder(rate: int = 48000):
    """libopus's encoder through ctypes (the service only decodes): pcm int16 mono at
    ``rate`` -> one Opus packet."""
    import ctypes

    lib = ctypes.CDLL("libopus.so.0")
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_int32]
    error = ctypes.c_int()
    state = lib.opus_encoder_create(rate, 1, 2048, ctypes.byref(error))  # VOIP
    assert error.value == 0
    out = ctypes.create_string_buffer(1500)

    def encode(pcm: bytes) -> bytes:
        n = lib.opus_encode(state, pcm, len(pcm) // 2, out, len(out))
        assert n > 0
        return out.raw[:n]
    return encode


@pytest.mark.skipif(not rtp_ingest.opus.available(), reason="libopus0 is not installed")
def test_opus_without_levels_is_decoded_for_the_vad_path_and_decides_as_pcm_over_grpc():
    """Opus from a 48 kHz source whose packets carry no level (a sender without the RFC
    6464 extension): decoded with libopus at 16 kHz and stepped as PCM; the same decoded
    audio over gRPC makes the same decisions."""
    from service.runtime import opus
    from service.tools import sample

    tracks, _ = sample.conversation(rate=48000)
    n_ticks = 11_000 // 20
    srcs = {300 + i: RtpSource("op", pid) for i, pid in enumerate(sorted(tracks))}
    encoders = {pid: _opus_encoder() for pid in tracks}
    reference = {pid: opus.Decoder() for pid in tracks}
    pcm = {pid: np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()
           for pid, x in tracks.items()}

    def tick_k(k):
        datagrams, tick = [], pb.RoomTick(room_id="op", timestamp_ms=20 * k, duration_ms=20)
        for ssrc, src in srcs.items():
            pid = src.participant_id
            payload = encoders[pid](pcm[pid][1920 * k: 1920 * (k + 1)])
            datagrams.append(packet(ssrc=ssrc, pt=111, seq=k, ts=960 * k, payload=payload))
            tick.audio.add(participant_id=pid, pcm=pb.PcmFrame(
                samples=reference[pid].decode(payload), sample_rate_hz=opus.RATE_HZ))
        return datagrams, tick

    decide_both_ways(srcs, n_ticks, tick_k)


@pytest.mark.skipif(not rtp_ingest.opus.available(), reason="libopus0 is not installed")
def test_what_libopus_refuses_is_counted():
    ingest = RtpIngest(sources({"a": 0}))
    # a code 3 packet without its frame count: no level, no audio
    ingest.receive([packet(ssrc=1000, pt=111, payload=b"\x03")], 0.0)
    assert (ingest.counts["opus_error"], ingest.counts["no_level"]) == (1, 1)
    # no payload at all is not decoded (libopus would conceal a lost packet: 120 ms)
    ingest.receive([packet(ssrc=1000, pt=111, seq=2, ts=1920, payload=b"")], 0.02)
    assert (ingest.counts["opus_error"], ingest.counts["no_level"]) == (1, 2)


def test_opus_without_libopus_is_counted_as_no_level(monkeypatch):
    monkeypatch.setattr(rtp_ingest.opus, "available", lambda: False)
    ingest = RtpIngest(sources({"a": 0}))
    ingest.receive([packet(ssrc=1000, pt=111, payload=b"\x78\x01\x02")], 0.0)
    assert (ingest.counts["opus_error"], ingest.counts["no_level"]) == (0, 1)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_sequence_accounting_agrees_with_a_reference_on_any_loss_reordering_and_duplication(
        data):
    """Packets of one source dropped, duplicated and displaced by up to 10 places (within
    the 64-packet window), the first one possibly not the lowest, numbers wrapping or not:
    the counts are those a plain reference computes from the arrival order."""
    n = data.draw(st.integers(1, 200))
    base = data.draw(st.sampled_from([0, 65_500, 30_000]))
    kept = [k for k in range(n) if not data.draw(st.booleans()) or k % 3]  # ~1/6 dropped
    if not kept:
        return
    jitter = data.draw(st.lists(st.floats(0, 10), min_size=len(kept), max_size=len(kept)))
    order = [k for _, k in sorted(zip([k + j for k, j in zip(kept, jitter)], kept))]
    arrivals = []
    for k in order:
        arrivals.append(k)
        if data.draw(st.integers(0, 9)) == 0:  # a duplicate, up to 3 places later
            arrivals.insert(len(arrivals) + data.draw(st.integers(-3, 0)) or 0, k)
    # the reference: a duplicate is a number seen before; reordered, one below the
    # highest so far; lost, a number never received between the lowest received and
    # the highest (a drop after it or before the lowest is not known to anyone)
    seen, highest, want = set(), -1, {"duplicate": 0, "reordered": 0}
    for k in arrivals:
        if k in seen:
            want["duplicate"] += 1
            continue
        want["reordered"] += k < highest
        seen.add(k)
        highest = max(highest, k)
    want_lost = sum(1 for k in range(min(seen) + 1, highest) if k not in seen)

    ingest = RtpIngest(sources({"a": 0}))
    for at in range(0, len(arrivals), 10):  # ten at a time, in order, near their media time
        batch = arrivals[at:at + 10]
        ingest.receive([packet(ssrc=1000, seq=(base + k) % 2**16, ts=960 * k,
                               extension=level_element(40, True)) for k in batch],
                       0.02 * max(batch))
    ingest.unmap(1000)
    got = {"duplicate": ingest.counts["duplicate"], "reordered": ingest.counts["reordered"]}
    assert (got, ingest.lost) == (want, want_lost), arrivals


def test_an_unmapped_source_leaves_and_its_waiting_packets_do_not_bring_it_back():
    # a's packets for ticks 0-9 are in while b has sent only 0-2: ticks 3-9 wait for b.
    # a is unmapped then: it leaves, and its waiting levels must not re-add it later
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    for k in range(10):
        _send(ingest, 1000, k, 20, True)
    for k in range(3):
        _send(ingest, 1001, k, 70, False)
    ingest.unmap(1000)
    ticks = [t for req in ingest.closed(0.045).values() for t in req.ticks]
    for k in range(3, 10):
        _send(ingest, 1001, k, 70, False)
        ticks += [t for req in ingest.closed(0.02 * k + 0.002).values() for t in req.ticks]
    left = [t.timestamp_ms for t in ticks for e in t.events
            if e.type == pb.ParticipantEventType.PARTICIPANT_EVENT_TYPE_LEAVE]
    assert left == [40]
    after = [(t_ms, who) for t_ms, who in frames(ticks) if t_ms > left[0]]
    assert after and all(p == "b" for _, tick in after for p, *_ in tick), after


def test_a_longer_jitter_wait_keeps_a_packet_a_stalled_host_read_late():
    """Tick 1 ends 40 ms after the room's clock starts; its packet, read at 120 ms (the host
    stalled), is late after the default 60 ms wait and in time with a 150 ms one."""
    for wait_ms, late, levels in ((rtp_ingest.JITTER_MS, 1, [40]), (150.0, 0, [40, 30])):
        ingest = RtpIngest(sources({"a": 0}), late_wait_ms=wait_ms)
        ingest.receive([packet(ssrc=1000, ts=0, seq=1, extension=level_element(40, True))], 0.0)
        ingest.receive([packet(ssrc=1000, ts=960, seq=2, extension=level_element(30, True))],
                       0.12)
        assert ingest.counts["late"] == late
        (req,) = ingest.closed(1.0).values()
        got = [f[0][1] for _t, f in frames(req.ticks) if f and f != SILENT_A]
        assert got == levels


def test_ticks_after_an_unmap_fit_the_roster_the_registry_keeps():
    """UnmapRtpSource makes its participant leave the registry at once; the ticks the
    ingest closes after that were sent in the compact form with the old roster (one byte
    too many: 'tick refused: 2 bytes for a roster of 1', the Janus demo's log when bob
    closed his tab), and the room lost them."""
    ingest = RtpIngest(sources({"a": 0, "b": 0}))
    reg = RoomRegistry()
    for k in range(5):
        _send(ingest, 1000, k, 20, True)
        _send(ingest, 1001, k, 70, False)
        for req in ingest.closed(0.02 * k + 0.002).values():
            assert not reg.process(req).rejections
    _send(ingest, 1000, 5, 20, True)    # tick 5 is in for both, not yet closed
    _send(ingest, 1001, 5, 70, False)
    ingest.unmap(1001)                  # the server's UnmapRtpSource, then its LEAVE
    leave = pb.RoomTick(room_id="r", timestamp_ms=reg.room("r").last_t_ms)
    leave.events.add(participant_id="b", type=pb.ParticipantEventType.PARTICIPANT_EVENT_TYPE_LEAVE)
    assert not reg.process(pb.StreamRequest(ticks=[leave])).rejections
    sent = []
    for k in range(6, 9):
        _send(ingest, 1000, k, 20, True)
        for req in ingest.closed(0.02 * k + 0.002).values():
            assert not reg.process(req).rejections, req
            sent.extend(req.ticks)
    assert [t.timestamp_ms for t in sent if t.levels.levels or t.audio] == [100, 120, 140, 160]
    assert list(reg.room("r").slots) == ["a"]
