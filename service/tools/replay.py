"""Replay a recorded conversation through the engine (in-process or over gRPC).

Inputs (a contract other tools rely on):
  levels CSV  header ``t_ms,participant,level,voice``; one row per participant per packet,
              ``level`` RFC 6464 0..127, ``voice`` 0/1 (the V bit).
  WAV folder  one mono 16-bit WAV per participant (8/16/32/48 kHz); the participant id is
              the file name without ``.wav``; sent as 20 ms PCM frames.
  events JSONL (optional, beside either) one state change per line, applied at the first
              tick at or after ``t_ms``:
              ``{"t_ms": 1200, "participant": "p2", "video": false}``; the keys are
              ``video``, ``muted``, ``pinned``, ``screen_share`` (true/false) and
              ``join``, ``leave`` (true); several keys in a line apply in that order.
Output: JSON Lines, one object per video switch: ``{"t_ms", "speaker", ...}``; the first
line is the first speaker shown.
"""
from __future__ import annotations

import csv
import json
import pathlib
import struct
import uuid
import wave
from collections.abc import Callable, Iterable, Iterator
from typing import IO

import numpy as np

from dsp.pcm import SAMPLE_RATES_HZ
from dsp.rfc6464 import header_bytes

from ..api import speakerswitch_pb2 as pb
from ..runtime import rtp
from ..runtime.config import ServiceConfig
from .jsonl import records
from ..runtime.rooms import MAX_TIMESTAMP_MS, RoomRegistry

WAV_FRAME_MS = 20
DEFAULT_BATCH_TICKS = 50
"""Ticks per request: one second of a room per message keeps gRPC overhead small in replays
(a live media server sends one tick per request instead)."""


class InputError(ValueError):
    """A replay input file is malformed."""


def read_levels_csv(path: str | pathlib.Path) -> tuple[list[int], list[tuple[str, ...]],
                                                        list[bytes]]:
    """-> (tick times, roster per tick, RFC 6464 bytes per tick)."""
    by_t: dict[int, list[tuple[str, int, int]]] = {}
    # utf-8-sig: a spreadsheet's CSV export starts with a byte-order mark
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            head = next(reader, None)
            if head != ["t_ms", "participant", "level", "voice"]:
                raise InputError(f"{path}: header must be t_ms,participant,level,voice, "
                                 f"got {head}")
            for n, row in enumerate(reader, 2):
                try:
                    t, pid, level, voice = row
                    t_i, lv, v = int(t), int(level), int(voice)
                except ValueError:
                    raise InputError(f"{path}:{n}: bad row {row}") from None
                if not 0 <= lv <= 127 or v not in (0, 1) or not pid:
                    raise InputError(f"{path}:{n}: level must be 0..127, voice 0/1, "
                                     f"participant non-empty: {row}")
                if not 0 <= t_i <= MAX_TIMESTAMP_MS:
                    raise InputError(f"{path}:{n}: t_ms must be 0..{MAX_TIMESTAMP_MS}: {row}")
                by_t.setdefault(t_i, []).append((pid, lv, v))
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text (is it a levels CSV?)") from None
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num}: not CSV ({e})") from None
    times = sorted(by_t)
    rosters, payloads = [], []
    for t in times:
        rows = by_t[t]
        rosters.append(tuple(p for p, _, _ in rows))
        payloads.append(header_bytes(np.array([lv for _, lv, _ in rows]),
                                     np.array([v for _, _, v in rows])))
    return times, rosters, payloads


ET = pb.ParticipantEventType
# events-file key -> (event type if true, event type if false), in the order applied
EVENT_KEYS = {
    "join": (ET.PARTICIPANT_EVENT_TYPE_JOIN, None),
    "video": (ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON, ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF),
    "muted": (ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED, ET.PARTICIPANT_EVENT_TYPE_AUDIO_UNMUTED),
    "pinned": (ET.PARTICIPANT_EVENT_TYPE_PIN, ET.PARTICIPANT_EVENT_TYPE_UNPIN),
    "screen_share": (ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON,
                     ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF),
    "leave": (ET.PARTICIPANT_EVENT_TYPE_LEAVE, None),
}


def read_events(path: str | pathlib.Path, first_lines: dict[str, int] | None = None
                ) -> list[tuple[int, pb.ParticipantEvent]]:
    """The events file as (t_ms, event), in time order (stable); ``first_lines`` gets the
    line each participant is first named on."""
    out = []
    try:
        lines = list(records(path))
    except ValueError as e:
        raise InputError(str(e)) from None
    for n, d in lines:
        try:
            t, pid = int(d["t_ms"]), str(d["participant"])
        except (ValueError, KeyError, TypeError, OverflowError) as e:
            raise InputError(f"{path}:{n}: need t_ms and participant ({e})") from None
        if not 0 <= t <= MAX_TIMESTAMP_MS:
            raise InputError(f"{path}:{n}: t_ms must be 0..{MAX_TIMESTAMP_MS}, got {t}")
        if first_lines is not None:
            first_lines.setdefault(pid, n)
        unknown = set(d) - {"t_ms", "participant"} - set(EVENT_KEYS)
        if unknown:
            raise InputError(f"{path}:{n}: unknown keys {sorted(unknown)} "
                             f"(known: {', '.join(EVENT_KEYS)})")
        for key, (if_true, if_false) in EVENT_KEYS.items():
            if key not in d:
                continue
            if not isinstance(d[key], bool) or (if_false is None and not d[key]):
                raise InputError(f"{path}:{n}: {key} must be "
                                 + ("true" if if_false is None else "true or false"))
            out.append((t, pb.ParticipantEvent(participant_id=pid,
                                               type=if_true if d[key] else if_false)))
    out.sort(key=lambda e: e[0])
    return out


def with_events(ticks: Iterable[pb.RoomTick], events: list[tuple[int, pb.ParticipantEvent]]
                ) -> Iterator[pb.RoomTick]:
    """Attach each event to the first tick at or after its time; events after the last
    tick get an events-only tick of their own."""
    k = 0
    last: pb.RoomTick | None = None
    for tick in ticks:
        while k < len(events) and events[k][0] <= tick.timestamp_ms:
            tick.events.append(events[k][1])
            k += 1
        last = tick
        yield tick
    while k < len(events) and last is not None:
        t = max(events[k][0], last.timestamp_ms)
        tail = pb.RoomTick(room_id=last.room_id, timestamp_ms=t)
        while k < len(events) and max(events[k][0], last.timestamp_ms) == t:
            tail.events.append(events[k][1])
            k += 1
        yield tail


def levels_ticks(path: str | pathlib.Path, room_id: str) -> Iterator[pb.RoomTick]:
    times, rosters, payloads = read_levels_csv(path)
    last_roster: tuple[str, ...] | None = None
    for t, roster, payload in zip(times, rosters, payloads):
        tick = pb.RoomTick(room_id=room_id, timestamp_ms=t, duration_ms=WAV_FRAME_MS)
        tick.levels.levels = payload
        if roster != last_roster:
            tick.levels.roster.extend(roster)
            last_roster = roster
        yield tick


DTX_QUIET_LEVEL = 50
"""-dBov: a packet without voice at least this quiet is silence to Opus DTX (its encoder
stops sending on comfort-noise-level input; a voiced or louder one is sent)."""
DTX_KEEPALIVE_PACKETS = 20
"""In DTX Opus still sends one packet in 20 (every 400 ms of 20 ms frames)."""
RTP_CLOCK_HZ = 48000
LEVEL_EXTENSION_ID = 1  # the ingest's default (a=extmap:1 ...ssrc-audio-level)


def levels_rtp_ticks(path: str | pathlib.Path, room_id: str, dtx: bool = False
                     ) -> Iterator[pb.RoomTick]:
    """A levels CSV as a media server forwarding its participants' RTP would deliver it:
    each row one Opus packet with its RFC 6464 level and V bit, arriving as its 20 ms end,
    through the RTP ingest (service/runtime/rtp_ingest.py), so the ingest's tick building
    and gap filling are measured with the engine. ``dtx``: silent frames send no packet
    but one in DTX_KEEPALIVE_PACKETS, as Opus DTX does."""
    from ..runtime.rtp_ingest import RtpIngest, RtpSource

    times, rosters, payloads = read_levels_csv(path)
    ssrcs: dict[str, int] = {}
    for roster in rosters:
        for pid in roster:
            ssrcs.setdefault(pid, 1000 + len(ssrcs))
    ingest = RtpIngest({ssrc: RtpSource(room_id, pid) for pid, ssrc in ssrcs.items()})
    seq = dict.fromkeys(ssrcs, 0)
    quiet_run = dict.fromkeys(ssrcs, 0)
    end_ms = (times[-1] if times else 0) + WAV_FRAME_MS
    k = 0
    # a second on past the last packet: the ingest closes every tick it is waiting on
    for now_ms in range(WAV_FRAME_MS, end_ms + 1000 + 1, WAV_FRAME_MS):
        datagrams = []
        while k < len(times) and times[k] + WAV_FRAME_MS <= now_ms:
            for pid, byte in zip(rosters[k], payloads[k]):
                if dtx and not byte & 0x80 and byte & 0x7F >= DTX_QUIET_LEVEL:
                    quiet_run[pid] += 1
                    if (quiet_run[pid] - 1) % DTX_KEEPALIVE_PACKETS:
                        continue
                else:
                    quiet_run[pid] = 0
                datagrams.append(_level_packet(seq[pid], times[k] * RTP_CLOCK_HZ // 1000,
                                               ssrcs[pid], byte))
                seq[pid] += 1
            k += 1
        ingest.receive(datagrams, now_ms / 1000)
        for request in ingest.closed(now_ms / 1000).values():
            yield from request.ticks


def _level_packet(seq: int, timestamp: int, ssrc: int, level_byte: int) -> bytes:
    """An RTP packet of payload type 111 with the one-byte audio-level extension."""
    extension = bytes([LEVEL_EXTENSION_ID << 4, level_byte, 0, 0])
    return (struct.pack("!BBHII", 0x90, 111, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
            + struct.pack("!HH", rtp.ONE_BYTE_PROFILE, 1) + extension + b"\xfc")


RTP_FLUSH_S = 0.005
"""Captured datagrams are handed to the ingest in batches of this much capture time, as
the server reads its socket (service/runtime/rtp_server.py)."""


def rtp_pcap_ticks(pcap_path: str, map_path: str, room_id: str | None
                   ) -> tuple[str, Iterator[pb.RoomTick]]:
    """(the room, its ticks) from a captured call's RTP: every UDP datagram of the capture
    through the RTP ingest (service/runtime/rtp_ingest.py), timed by the capture's clock; the
    sources of ``room_id`` (the map's only room when None) as the map says."""
    from .pcap import udp_datagrams
    from ..runtime.rtp_ingest import RtpIngest, load_map

    sources = load_map(map_path)
    rooms = sorted({s.room_id for s in sources.values()})
    if room_id is None:
        if len(rooms) != 1:
            raise InputError(f"{map_path}: maps {len(rooms)} rooms ({', '.join(rooms[:5])}): "
                             "choose one with --room")
        room_id = rooms[0]
    elif room_id not in rooms:
        raise InputError(f"{map_path}: no source of room {room_id!r} (rooms: "
                         f"{', '.join(rooms[:5])})")
    ingest = RtpIngest({k: v for k, v in sources.items() if v.room_id == room_id})

    def ticks() -> Iterator[pb.RoomTick]:
        t0 = batch_t = None
        batch: list[bytes] = []
        arrivals: list[float] = []
        senders: list[tuple[str, int]] = []
        t = 0.0
        for d in udp_datagrams(pcap_path):
            t0 = d.t_s if t0 is None else t0
            t = d.t_s - t0
            if batch and t - batch_t >= RTP_FLUSH_S:
                ingest.receive(batch, batch_t, arrivals, senders)
                batch, arrivals, senders = [], [], []
                for request in ingest.closed(t).values():
                    yield from request.ticks
            if not batch:
                batch_t = t
            batch.append(d.payload)
            arrivals.append(t)
            senders.append(d.sender)
        if batch:
            ingest.receive(batch, batch_t, arrivals, senders)
        for request in ingest.closed(t + 1.0).values():
            yield from request.ticks

    return room_id, ticks()


def read_wav(path: pathlib.Path) -> tuple[int, bytes]:
    try:
        w = wave.open(str(path), "rb")
    except EOFError:  # the wave module's word for a file cut short (or empty)
        raise InputError(f"{path}: not a WAV file (empty or cut short)") from None
    except (wave.Error, struct.error) as e:
        raise InputError(f"{path}: not a WAV file ({e})") from None
    with w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise InputError(f"{path}: must be mono 16-bit PCM")
        rate = w.getframerate()
        if rate not in SAMPLE_RATES_HZ:
            raise InputError(f"{path}: {rate} Hz is not one of {SAMPLE_RATES_HZ}")
        return rate, w.readframes(w.getnframes())


def wav_ticks(folder: str | pathlib.Path, room_id: str) -> Iterator[pb.RoomTick]:
    if not pathlib.Path(folder).is_dir():
        raise InputError(f"{folder}: " + ("not a directory" if pathlib.Path(folder).exists()
                                          else "no such directory"))
    paths = sorted(pathlib.Path(folder).glob("*.wav"))
    if not paths:
        raise InputError(f"{folder}: no .wav files")
    tracks = [(p.stem, *read_wav(p)) for p in paths]

    def ticks() -> Iterator[pb.RoomTick]:
        n_ticks = max(len(pcm) // (2 * rate * WAV_FRAME_MS // 1000) for _, rate, pcm in tracks)
        for k in range(n_ticks):
            tick = pb.RoomTick(room_id=room_id, timestamp_ms=k * WAV_FRAME_MS,
                               duration_ms=WAV_FRAME_MS)
            for pid, rate, pcm in tracks:
                nb = 2 * rate * WAV_FRAME_MS // 1000
                frame = pcm[k * nb:(k + 1) * nb]
                if len(frame) == nb:
                    tick.audio.add(participant_id=pid,
                                   pcm=pb.PcmFrame(samples=frame, sample_rate_hz=rate))
            yield tick

    return ticks()


def requests(ticks: Iterable[pb.RoomTick], config: pb.RoomConfig | None = None,
             events_path: str | pathlib.Path | None = None,
             batch_ticks: int = DEFAULT_BATCH_TICKS,
             warn: Callable[[str], None] | None = None) -> Iterator[pb.StreamRequest]:
    """Ticks (with the events file merged in) batched into requests; the room config goes
    with the first tick. ``warn`` is told of events naming a participant that no tick
    has (a typo, most likely: the engine ignores their events)."""
    if events_path is not None:
        first_lines: dict[str, int] = {}
        events = read_events(events_path, first_lines)
        if warn is not None:
            ticks = _warn_unknown(ticks, first_lines, events_path, warn)
        ticks = with_events(ticks, events)
    return _batches(ticks, config, batch_ticks)


def _warn_unknown(ticks: Iterable[pb.RoomTick], first_lines: dict[str, int],
                  path: str | pathlib.Path, warn: Callable[[str], None]
                  ) -> Iterator[pb.RoomTick]:
    """Pass the ticks through; once they are all seen, warn of each participant of the
    events file that none of them had."""
    seen: set[str] = set()
    for tick in ticks:
        seen.update(tick.levels.roster)   # levels: the roster comes when it changes
        seen.update(a.participant_id for a in tick.audio)
        yield tick
    for pid, n in sorted(first_lines.items(), key=lambda kv: kv[1]):
        if pid not in seen:
            known = ", ".join(sorted(seen)[:8]) + (", ..." if len(seen) > 8 else "")
            warn(f"{path}:{n}: participant {pid!r} is in none of the conversation's tracks "
                 f"({known or 'none'}); a typo?")


def _batches(ticks: Iterable[pb.RoomTick], config: pb.RoomConfig | None,
             batch_ticks: int) -> Iterator[pb.StreamRequest]:
    batch = pb.StreamRequest(batch_id=1)
    for i, tick in enumerate(ticks):
        if i == 0 and config is not None:
            tick.config.CopyFrom(config)
        batch.ticks.append(tick)
        if len(batch.ticks) >= batch_ticks:
            yield batch
            batch = pb.StreamRequest(batch_id=batch.batch_id + 1)
    if batch.ticks:
        yield batch


def run_local(requests: Iterable[pb.StreamRequest],
              config: ServiceConfig | None = None) -> Iterator[pb.StreamResponse]:
    """The same path the server takes, without the network."""
    registry = RoomRegistry(config or ServiceConfig())
    for request in requests:
        yield registry.process(request)


def run_remote(requests: Iterable[pb.StreamRequest], target: str,
               ready_timeout_s: float = 10.0, client_options: dict | None = None
               ) -> Iterator[pb.StreamResponse]:
    from ..client import Client

    with Client(target, **(client_options or {})) as client:
        client.wait_ready(ready_timeout_s)
        yield from client.stream(requests)


def switch_record(event: pb.RoomEvent) -> dict:
    sw = event.switch
    return {"t_ms": event.timestamp_ms, "speaker": sw.speaker_id or None,
            "previous": sw.previous_speaker_id or None,
            "reason": pb.SwitchReason.Name(sw.reason)[len("SWITCH_REASON_"):],
            "audio_speaker": sw.audio_speaker_id or None, "score": round(sw.score, 2)}


def write_switches(responses: Iterable[pb.StreamResponse], out: IO[str],
                   collect: list | None = None) -> tuple[int, int]:
    """Write one JSON line per video switch (also appended as (t_ms, speaker) to
    ``collect``); raise on a rejected tick. Returns (switches written, responses read)."""
    n = n_resp = 0
    for resp in responses:
        n_resp += 1
        if resp.rejections:
            r = resp.rejections[0]
            raise InputError(f"tick {r.tick_index} of batch {resp.batch_id} rejected: "
                             f"{r.field}: {r.message}")
        for e in resp.events:
            if e.HasField("switch"):
                out.write(json.dumps(switch_record(e)) + "\n")
                n += 1
                if collect is not None:
                    collect.append((float(e.timestamp_ms), e.switch.speaker_id or None))
    return n, n_resp


def new_room_id() -> str:
    """A fresh room for a replay through a shared server (a rerun must not collide)."""
    return "replay-" + uuid.uuid4().hex[:12]
