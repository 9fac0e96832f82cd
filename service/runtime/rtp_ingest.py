"""RTP in, room ticks out: each mapped source's packets placed on its room's media clock.

A media server that forwards each participant's audio as RTP needs no client of ours: the
SSRC says who it is (a mapping set by file, ``serve --rtp-map``), the RFC 6464 level in
each packet says how loud and whether voiced, and the RTP timestamp says when. Sources of a
room have unrelated RTP clocks, so each is anchored once to the room's media clock (at its
first packet, or again after a restart or a jump) and advances by its own timestamps from
then on: arrival jitter does not move a packet to another tick. A room's 20 ms tick is
closed, and becomes a ``RoomTick`` of the ordinary gRPC path, when every source of the room
has sent its packets for it (its timestamp steps say its next packet starts in a later
tick), or ``late_wait_ms`` (``JITTER_MS`` by default) after its end on the wall clock,
whichever is first; a packet for a closed tick is late and dropped.

Time comes in as ``now_s`` (wall clock, seconds); this module reads no clock and does no
I/O: the server feeds it datagrams and sends what ``closed`` returns through the registry.
"""
from __future__ import annotations

import json
import math
import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Tuple, Union

import numpy as np

from . import g711, opus, rtp
from ..api import speakerswitch_pb2 as pb

TICK_MS = 20
"""The engine's frame: one RoomTick per room per 20 ms of media time."""
JITTER_MS = 60
"""How long after a tick's end (wall clock) it waits for late packets, by default (the
``rtp_jitter_ms`` setting): network jitter on a LAN is a few ms; the videobridge treats
60 ms without packets as silence. A host that stalls the ingest longer than this (a
starved CPU) loses packets as late: the ``late`` outcome of the packet counter says so,
and a longer wait keeps them, for that much more delay before a tick is decided."""
REANCHOR_MS = 1000
"""A source whose RTP time strays this far from its room's clock (an SSRC restart, a
timestamp jump, a sender that paused without advancing its timestamps) is anchored again."""
LEAVE_AFTER_S = 10.0
"""A source silent this long on the wire (not DTX: no packet at all) has left: its
participant gets a LEAVE event."""
LEAVE_CHECK_S = 1.0
"""How often sources are looked at for that (a pass over all of them)."""
DTX_MS = 60
"""A source without packets for this much of its room's media time is quiet (Opus DTX
sends nothing, or one packet in 400 ms, while its speaker is quiet): its ticks get its
quiet level, unvoiced (``_Room.silence``), or, until it has sent an unvoiced packet,
digital silence, which stops it speaking at once, as the videobridge has it. A quiet
level, not silence, keeps a holder pausing in DTX from counting as muted after
``silent_hold_ms`` (500 ms) instead of its hold. Shorter gaps are
packet loss, and its frames are left out (the engine keeps its state). Without this a
talker whose browser goes into DTX would stay speaking on its last level until the
engine's ``no_audio_timeout_ms`` (200 ms), or for as long as its room sends no ticks at
all when everyone in it is quiet."""
DTX_TICKS = DTX_MS // TICK_MS
SILENCE_LEVEL = 127
"""RFC 6464: -127 dBov, digital silence."""
QUIET_RELAX = 0.02
"""A source's quiet level (see ``_Room.silence``) is its quietest unvoiced packet's, moving
toward louder ones by this much (dB) a packet: 1 dB a second at 20 ms packets, as slowly
as the engine's noise floor rises, so a quiet syllable's tail (unvoiced, a few frames)
hardly moves it."""
_SILENT, _SILENT_WITHOUT_V = (SILENCE_LEVEL, 0), (SILENCE_LEVEL, -1)
"""A silent tick's level frame, with its V bit cleared or without one."""
_SILENT_TICKS = int(LEAVE_AFTER_S * 1000) // TICK_MS + 1
"""Ticks after its last packet that a quiet source is filled with silence: until it has
left."""
MAX_SOURCE_ID_BYTES = 128
DEFAULT_CLOCK_RATE_HZ = 48000
"""Opus, what browsers send."""
DEFAULT_AUDIO_LEVEL_ID = 1
"""The id browsers negotiate for the audio level by default."""
VOICE = {1: pb.VOICE_ACTIVITY_PRESENT, 0: pb.VOICE_ACTIVITY_ABSENT}
G711 = {0: g711.MU_LAW, 8: g711.A_LAW}
"""Static RTP payload types (RFC 3551) decoded for the VAD path when a packet carries no
audio level: PCMU and PCMA, 8 kHz."""
SEQUENCE_WINDOW = 64
"""Sequence numbers remembered per source (1.28 s at 20 ms), to tell a duplicate from a
reordered packet; one that falls this far behind the newest unreceived counts as lost."""
_ALL_RECEIVED = (1 << SEQUENCE_WINDOW) - 1
MAX_DROPOUT, MAX_MISORDER = 3000, 100
"""RFC 3550 appendix A.1: a sequence number this far ahead (or behind) of the newest is a
jump, not loss or reordering; two packets in a row after it restart the count."""
JITTER_SAMPLES_MAX = 100_000
"""Jitter observations kept until the server reads them (a replay never does)."""
MAX_PACKET_MS = 120
"""The longest packet a timestamp step is taken as (Opus's longest); a longer step is a gap
(DTX, loss), and the source's packets keep the duration they had."""
G711_RATE_HZ = 8000
OPUS_CLOCK_RATE_HZ = 48000
"""Opus's RTP clock (RFC 7587) whatever its audio's rate: a source at this clock whose
packets have no level and are neither G.711 nor L16 is decoded as Opus."""
_NO_PCM = (None, G711_RATE_HZ)
G711_TICK_BYTES = G711_RATE_HZ * TICK_MS // 1000 * 2
"""A tick of decoded G.711: 160 samples of int16."""


class _Pcm(list):
    """A participant's decoded audio within one tick: (RTP timestamp, int16 bytes) parts,
    at ``rate`` Hz."""
    rate = G711_RATE_HZ


L16_RATES_HZ = (8000, 16000, 32000, 48000)
"""The L16 rates the VAD path takes (those of dsp.pcm.SAMPLE_RATES_HZ)."""


@dataclass(frozen=True)
class RtpSource:
    """Who an SSRC is, and how to read its packets."""
    room_id: str
    participant_id: str
    tenant: str = ""
    clock_rate_hz: int = DEFAULT_CLOCK_RATE_HZ
    """The payload's RTP clock: 48000 for Opus, 8000 for G.711, the rate for L16."""
    audio_level_id: int = DEFAULT_AUDIO_LEVEL_ID
    """The RFC 8285 id of the RFC 6464 extension (browsers negotiate 1 by default)."""
    voice_activity: bool = True
    """Whether the sender sets the V bit from a voice activity detector (RFC 6464 "vad=on",
    as browsers do); with "vad=off" (GStreamer's level element, for one) it means nothing
    and the engine judges speech from the levels alone."""
    l16: bool = False
    """Whether its packets without an audio level carry L16 (RFC 3551: big-endian 16-bit
    samples, mono here) at ``clock_rate_hz``: decoded for the VAD path."""


SourceKey = Union[int, Tuple[str, int]]
"""What a mapping is keyed by: an SSRC, or the (host, port) a sender's datagrams come from
(host "" for any host)."""


def source_key(ssrc: int, source_port: int = 0, source_host: str = "",
               where: str = "") -> SourceKey:
    """The key of a mapping: ``ssrc``, or (host, port) when ``source_port`` is set;
    ValueError naming the field."""
    if not isinstance(source_port, int) or isinstance(source_port, bool) \
            or not 0 <= source_port <= 65535:
        raise ValueError(f"{where}.source_port: 1..65535 (0: by ssrc), got {source_port!r}")
    if not isinstance(source_host, str):
        raise ValueError(f"{where}.source_host: an IP address, got {source_host!r}")
    if source_port and ssrc:
        raise ValueError(f"{where}.ssrc: 0 with source_port (the sender's datagrams are "
                         f"this source whatever their SSRC), got {ssrc!r}")
    if not source_port:
        if source_host:
            raise ValueError(f"{where}.source_host: only with source_port")
        if not isinstance(ssrc, int) or isinstance(ssrc, bool) or not 0 <= ssrc < 2**32:
            raise ValueError(f"{where}.ssrc: an integer 0..2^32-1, got {ssrc!r}")
        return ssrc
    if not source_host:
        return ("", source_port)
    try:  # the form the socket reports a sender's address in
        return (str(ipaddress.ip_address(source_host.strip("[]"))), source_port)
    except ValueError:
        raise ValueError(f"{where}.source_host: an IP address (the sender's, as its "
                         f"datagrams come from it), got {source_host!r}") from None


def key_field(key: SourceKey) -> str:
    """The field a mapping is keyed by, for messages: "ssrc" or "source_port"."""
    return "ssrc" if isinstance(key, int) else "source_port"


def describe_key(key: SourceKey) -> str:
    """``305419896`` (an SSRC) or ``10.0.0.5:40000`` (``*:40000``: any host), for messages
    after the field's name."""
    if isinstance(key, int):
        return str(key)
    host, port = key
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def load_map(path: str) -> dict[SourceKey, RtpSource]:
    """``{"sources": [{"ssrc": 305419896, "room": "r", "participant": "alice",
    "tenant": "", "clock_rate_hz": 48000, "audio_level_id": 1}, ...]}``, an entry keyed
    by ``"source_port"`` (and ``"source_host"``) instead of ``"ssrc"`` for a sender whose
    SSRC is not known in advance; ValueError naming the file, the entry and the field for
    anything else."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None
    entries = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected {{"sources": [...]}}')
    out: dict[int, RtpSource] = {}
    for i, e in enumerate(entries):
        where = f"{path}: sources[{i}]"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected an object")
        unknown = set(e) - {"ssrc", "source_port", "source_host", "room", "participant",
                            "tenant", "clock_rate_hz", "audio_level_id", "voice_activity",
                            "l16"}
        if unknown:
            raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if ("ssrc" in e) == ("source_port" in e):
            raise ValueError(f"{where}: one of ssrc or source_port (the sender's UDP port)")
        if e.get("source_port", 1) == 0:  # 0 is "by ssrc" over gRPC, not a port here
            raise ValueError(f"{where}.source_port: 1..65535, got 0")
        key = source_key(e.get("ssrc", 0), e.get("source_port", 0), e.get("source_host", ""),
                         where)
        if key in out:
            field_name = "ssrc" if isinstance(key, int) else "source_port"
            raise ValueError(f"{where}.{field_name}: {describe_key(key)} is mapped twice")
        out[key] = source(e.get("room"), e.get("participant"), e.get("tenant", ""),
                           e.get("clock_rate_hz", 48000), e.get("audio_level_id", 1),
                           e.get("voice_activity", True), where, e.get("l16", False))
    return out


def source(room, participant, tenant="", clock_rate_hz=48000, audio_level_id=1,
           voice_activity=True, where="source", l16=False) -> RtpSource:
    """An RtpSource with every field checked; ValueError naming the field."""
    for name, v in (("room", room), ("participant", participant)):
        if not isinstance(v, str) or not 0 < len(v.encode()) <= MAX_SOURCE_ID_BYTES:
            raise ValueError(f"{where}.{name}: 1..{MAX_SOURCE_ID_BYTES} bytes, got {v!r}")
    if not isinstance(tenant, str):
        raise ValueError(f"{where}.tenant: a string, got {tenant!r}")
    if not isinstance(clock_rate_hz, int) or not 1000 <= clock_rate_hz <= 192000:
        raise ValueError(f"{where}.clock_rate_hz: 1000..192000, got {clock_rate_hz!r}")
    if not isinstance(audio_level_id, int) or not 1 <= audio_level_id <= 255:
        raise ValueError(f"{where}.audio_level_id: 1..255 (1..14 in the one-byte form), "
                         f"got {audio_level_id!r}")
    if not isinstance(voice_activity, bool):
        raise ValueError(f"{where}.voice_activity: true or false, got {voice_activity!r}")
    if not isinstance(l16, bool):
        raise ValueError(f"{where}.l16: true or false, got {l16!r}")
    if l16 and clock_rate_hz not in L16_RATES_HZ:
        raise ValueError(f"{where}.clock_rate_hz: L16 at one of {L16_RATES_HZ}, "
                         f"got {clock_rate_hz!r}")
    return RtpSource(room, participant, tenant, clock_rate_hz, audio_level_id,
                     voice_activity, l16)


@dataclass
class _Stream:
    """One SSRC's place on its room's media clock."""
    anchor_timestamp: int = 0    # unwrapped RTP timestamp ...
    anchor_media_ms: float = 0.0  # ... at this media time of its room
    timestamp: int = -1          # the latest unwrapped timestamp (-1: not anchored)
    sequence: int = -1           # the highest unwrapped sequence number (-1: none yet)
    received: int = 0
    """Bit i: sequence number ``sequence - i`` arrived (SEQUENCE_WINDOW bits; those before
    the stream's first packet are set, so that a clear bit is a packet not received)."""
    first: int = -1              # the lowest sequence number received since the (re)start
    jump_to: int = -1            # the sequence number after a jump: a second one restarts
    step: int = 0                # RTP timestamp units from one packet to the next (0: unknown)
    transit: float | None = None  # arrival - RTP timestamp of the previous packet (RFC 3550)
    jitter: float = 0.0          # RFC 3550 interarrival jitter, in RTP timestamp units
    last_packet_s: float = 0.0
    joined: bool = False


@dataclass
class _Room:
    tenant: str
    room_id: str
    wall0_s: float                      # its media time 0 on the wall clock
    next_tick: int = 0                  # the first tick not yet closed
    ticks: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    latest_tick: dict[str, int] = field(default_factory=dict)  # per participant
    ready: dict[str, int] = field(default_factory=dict)
    """Per participant, the first tick it may still send packets for: its latest packet's
    tick, or the one after it when the timestamp steps say the next packet starts there."""
    sent_roster: tuple[str, ...] | None = None  # the sticky roster the registry has
    leaving: list[str] = field(default_factory=list)
    quiet: dict[str, float] = field(default_factory=dict)  # see QUIET_RELAX
    silence: dict[str, tuple[int, int] | int] = field(default_factory=dict)
    """Per participant, what stands for it in a tick it sent nothing for (DTX): a level
    frame, its quiet level with the V bit cleared (``QUIET_RELAX``; the level of a muted
    track's packets is 127, digital silence), or 127 before any unvoiced packet of it or
    without a V bit; for a PCM source, its sample rate (a tick of zeros)."""


def _one_tick(parts: _Pcm) -> bytes:
    """A tick's decoded G.711 or L16 packets in timestamp order, as exactly 20 ms: a lost
    packet's share is silence, a surplus (30 ms packets) is cut."""
    n = parts.rate * TICK_MS // 1000 * 2
    audio = b"".join(pcm for _, pcm in sorted(dict(parts).items()))  # a duplicate once
    return audio[:n].ljust(n, b"\0")


def _forget(room: _Room, pid: str) -> None:
    """``pid`` has left: out of the roster, and its packets for ticks not yet closed
    (waiting for slower sources) dropped, or they would add it back after its LEAVE."""
    room.latest_tick.pop(pid, None)
    room.ready.pop(pid, None)
    for k in [k for k, f in room.ticks.items() if f.pop(pid, None) and not f]:
        del room.ticks[k]


def _silence(room: _Room, pid: str, last: int, stop: int) -> None:
    """Digital silence for ``pid``, whose latest packet was for tick ``last``, in the open
    ticks before ``stop`` that are DTX_MS or more after it, up to LEAVE_AFTER_S (by then
    it has left)."""
    frame = room.silence.get(pid)
    if frame is None:  # it never gave a level or audio: nothing to say of it
        return
    for k in range(max(room.next_tick, last + DTX_TICKS), min(stop, last + _SILENT_TICKS)):
        frames = room.ticks.setdefault(k, {})
        if pid not in frames:
            if type(frame) is tuple:
                frames[pid] = frame
            else:
                frames[pid] = zeros = _Pcm()  # _one_tick makes it 20 ms of zeros
                zeros.rate = frame


def _wall_due(room: _Room, now_s: float, late_wait_ms: float) -> int:
    """The first of the room's ticks not closed by the wall clock at ``now_s``: those
    before it ended more than ``late_wait_ms`` ago."""
    return math.floor(((now_s - room.wall0_s) * 1000.0 - late_wait_ms) / TICK_MS)


def _unwrap(value: int, previous: int, modulus: int) -> int:
    """``value`` (mod ``modulus``) as the integer nearest ``previous``."""
    delta = (value - previous) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return previous + delta


class RtpIngest:
    """Datagrams in (``receive``), closed room ticks out (``closed``)."""

    def __init__(self, sources: dict[SourceKey, RtpSource] | None = None,
                 late_wait_ms: float = JITTER_MS) -> None:
        self.late_wait_ms = late_wait_ms
        """How long after a tick's end (wall clock) its late packets are still taken."""
        self.sources: dict[SourceKey, RtpSource] = {}
        """By SSRC, or by the (host, port) the datagrams come from (host "": any)."""
        self._ports: Counter[int] = Counter()
        """Source ports that mappings are keyed by: datagrams from others skip the look-up."""
        self._streams: dict[SourceKey, _Stream] = {}
        self._rooms: dict[tuple[str, str], _Room] = {}
        self._open: dict[tuple[str, str], _Room] = {}
        """Rooms with ticks or events waiting to be closed: ``closed`` looks at these only."""
        self.counts: Counter[str] = Counter()
        """Packets by outcome: rtp.REASONS, "unknown_ssrc", "late", "reordered",
        "duplicate", "no_level", "opus_error", "reanchored" (a bounded set of names: the
        metrics' labels)."""
        self.lost = 0
        """Packets never received: sequence numbers SEQUENCE_WINDOW behind the newest (or
        at the end of a stream: a leave, an unmap, a restart) that did not arrive."""
        self._opus: bool | None = None  # libopus loaded (None: not looked for yet)
        self._opus_decoders: dict[SourceKey, "opus.Decoder"] = {}
        """Per source sending Opus without levels (Opus decoding keeps state)."""
        self.jitter_samples: list[float] = []
        """Each source's interarrival jitter in seconds, once per LEAVE_CHECK_S for those
        that sent packets since the last look: the server moves them to a histogram."""
        self.bytes = 0
        self._leave_checked_s = -math.inf
        for key, src in (sources or {}).items():
            self.map(key, src)

    # ------------------------------------------------------------------ mapping
    def map(self, key: SourceKey, src: RtpSource) -> None:
        """``key`` (an SSRC, or a sender's (host, port): every datagram from there, whatever
        its SSRC) is ``src`` from now on; if it was someone else, that one leaves."""
        old = self.sources.get(key)
        if old is not None and old != src:
            self.unmap(key)
        if key not in self.sources and not isinstance(key, int):
            self._ports[key[1]] += 1
        self.sources[key] = src

    def unmap(self, key: SourceKey) -> RtpSource | None:
        """Forget ``key``; its participant leaves if it had sent anything. Returns what it
        was mapped to."""
        src = self.sources.pop(key, None)
        if src is not None and not isinstance(key, int):
            self._ports[key[1]] -= 1
            if not self._ports[key[1]]:
                del self._ports[key[1]]
        stream = self._streams.pop(key, None)
        self._opus_decoders.pop(key, None)
        if stream is not None:
            self._settle(stream)
        if src is not None and stream is not None and stream.joined:
            room = self._rooms.get((src.tenant, src.room_id))
            if room is not None:
                room.leaving.append(src.participant_id)
                # the server's LEAVE reaches the registry before the ticks still open here:
                # with it in them they would not fit the roster the registry keeps
                _forget(room, src.participant_id)
                self._open[(room.tenant, room.room_id)] = room
        return src

    # ------------------------------------------------------------------ packets
    def receive(self, datagrams: list[bytes], now_s: float,
                arrival_s: list[float] | None = None, senders: list | None = None) -> None:
        """Place each packet's level on its room's tick (or count why not). ``arrival_s``:
        when each datagram arrived (for the jitter; ``now_s`` for all if not given);
        ``senders``: the address each came from (for mappings by source port)."""
        if not datagrams:
            return
        self.bytes += sum(map(len, datagrams))
        p = rtp.parse(datagrams)
        for r, n in zip(*np.unique(p.reason, return_counts=True)):
            self.counts[rtp.REASONS[r]] += int(n)
        ok = np.flatnonzero(p.reason == rtp.OK)
        if not len(ok):
            return
        ssrcs = p.ssrc[ok].tolist()
        keys = ssrcs
        if self._ports and senders is not None:  # mapped by where they come from, if so
            keys = [self._sender_key(senders[i]) or s for i, s in zip(ok.tolist(), ssrcs)]
        srcs = [self.sources.get(s) for s in keys]
        known = [i for i, s in enumerate(srcs) if s is not None]
        unknown = len(ok) - len(known)
        if unknown:
            self.counts["ok"] -= unknown
            self.counts["unknown_ssrc"] += unknown
        if not known:
            return
        ok = ok[known]
        ids = np.array([srcs[i].audio_level_id for i in known], np.int64)
        level, voice = rtp.audio_levels(rtp.take(p, ok), ids)
        missing = np.flatnonzero(level == rtp.NO_LEVEL)
        pcm = self._decode(p, ok[missing], missing, [keys[known[j]] for j in missing.tolist()],
                           [srcs[known[j]] for j in missing.tolist()]) if len(missing) else {}
        for j, i in enumerate(known):
            src = srcs[i]
            payload, rate = pcm.get(j, _NO_PCM)
            self._place(keys[i], src, int(p.timestamp[ok[j]]), int(p.sequence[ok[j]]),
                        int(level[j]), int(voice[j]) if src.voice_activity else -1, now_s,
                        payload, rate,
                        now_s if arrival_s is None else arrival_s[int(ok[j])])

    def _decode(self, p: rtp.Packets, which: np.ndarray, places: np.ndarray, keys: list,
                srcs: list[RtpSource]) -> dict[int, tuple[bytes, int]]:
        """The audio of packets without a level, for the VAD path, by ``places`` (their
        indexes among the known packets): (int16 little-endian PCM, its rate) for L16
        sources, G.711 (payload types 0 and 8), and Opus from 48 kHz sources when libopus
        is there. Others have none (``no_level``)."""
        out = {}
        types = p.payload_type[which].tolist()
        for j, key, src, pt, payload in zip(places.tolist(), keys, srcs, types,
                                            rtp.payloads(p, which)):
            if src.l16:  # big-endian int16 (an odd last byte is dropped)
                out[j] = (np.frombuffer(payload, ">i2", len(payload) // 2).astype("<i2")
                          .tobytes(), src.clock_rate_hz)
            elif pt in G711:
                out[j] = (g711.decode(payload, G711[pt]), G711_RATE_HZ)
            elif src.clock_rate_hz == OPUS_CLOCK_RATE_HZ and payload \
                    and self._opus_available():  # (libopus takes no bytes for a lost packet)
                decoder = self._opus_decoders.get(key)
                if decoder is None:
                    decoder = self._opus_decoders[key] = opus.Decoder()
                audio = decoder.decode(payload)
                if audio is None:
                    self.counts["opus_error"] += 1
                else:
                    out[j] = (audio, opus.RATE_HZ)
        return out

    def _opus_available(self) -> bool:
        if self._opus is None:
            self._opus = opus.available()
        return self._opus

    def _sender_key(self, sender) -> tuple[str, int] | None:
        """The mapping keyed by a datagram's sender (host, port, ...), if any."""
        port = sender[1]
        if port not in self._ports:
            return None
        host = sender[0]
        if host.startswith("::ffff:") and "." in host:  # IPv4 on a dual-stack socket
            host = host[7:]
        key = (host, port)
        if key in self.sources:
            return key
        key = ("", port)
        return key if key in self.sources else None

    def _place(self, ssrc: SourceKey, src: RtpSource, timestamp: int, sequence: int,
               level: int, voice: int, now_s: float, pcm: bytes | None = None,
               pcm_rate: int = G711_RATE_HZ, arrival_s: float | None = None) -> None:
        key = (src.tenant, src.room_id)
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = _Room(src.tenant, src.room_id, now_s)
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = _Stream()
        room_ms = (now_s - room.wall0_s) * 1000.0
        previous = stream.timestamp
        if previous < 0:
            unwrapped = timestamp
        else:
            unwrapped = _unwrap(timestamp, previous, 2**32)
        media_ms = stream.anchor_media_ms + (unwrapped - stream.anchor_timestamp) \
            * 1000.0 / src.clock_rate_hz
        if stream.timestamp < 0 or abs(media_ms - room_ms) > REANCHOR_MS:
            if stream.timestamp >= 0:
                self.counts["reanchored"] += 1
            stream.anchor_timestamp, stream.anchor_media_ms = unwrapped, room_ms
            self._settle(stream)
            stream.transit = None
            media_ms = room_ms
        elif 0 < unwrapped - previous <= src.clock_rate_hz * MAX_PACKET_MS // 1000:
            stream.step = unwrapped - previous  # the packet's duration, from the steps
        if stream.sequence >= 0 and (sequence - stream.sequence) % 65536 == 1:
            # the next packet (almost all of them): the window moves on by one
            received = stream.received
            if not received >> (SEQUENCE_WINDOW - 1):
                self.lost += 1
            stream.received = ((received << 1) | 1) & _ALL_RECEIVED
            stream.sequence += 1
            stream.jump_to = -1
        elif not self._sequence(stream, sequence):
            self.counts["duplicate"] += 1
            return
        # RFC 3550 section 6.4.1: the interarrival jitter, smoothed over 16 packets
        transit = (now_s if arrival_s is None else arrival_s) * src.clock_rate_hz - unwrapped
        if stream.transit is not None:
            stream.jitter += (abs(transit - stream.transit) - stream.jitter) / 16.0
        stream.transit = transit
        stream.timestamp = max(stream.timestamp, unwrapped) if stream.timestamp >= 0 \
            else unwrapped
        stream.last_packet_s = now_s
        tick = math.floor(media_ms / TICK_MS)
        pid = src.participant_id
        if not stream.joined:
            stream.joined = True
            if pid in room.leaving:
                room.leaving.remove(pid)
        last = room.latest_tick.get(pid, tick)
        if tick > last + DTX_TICKS:  # back from DTX: the open ticks of its gap were silent
            self._open[key] = room
            _silence(room, pid, last, tick)
        room.latest_tick[pid] = max(last, tick)
        # where its next packet will be placed (the same arithmetic as for that packet): the
        # ticks before it have all of this source's packets, and close once every source's
        # have, without waiting for a later packet
        ready = tick if not stream.step else math.floor(
            (stream.anchor_media_ms + (unwrapped + stream.step - stream.anchor_timestamp)
             * 1000.0 / src.clock_rate_hz) / TICK_MS)
        if ready > room.ready.get(pid, -1):
            room.ready[pid] = ready
        if tick < max(room.next_tick, _wall_due(room, now_s, self.late_wait_ms)):
            self.counts["late"] += 1
            return
        if pcm is not None:
            self._open[key] = room
            room.silence[pid] = pcm_rate
            frames = room.ticks.setdefault(tick, {})
            parts = frames.get(pid)
            if type(parts) is not _Pcm:
                parts = frames[pid] = _Pcm()
                parts.rate = pcm_rate
            parts.append((unwrapped, pcm))
            return
        if level == rtp.NO_LEVEL:
            self.counts["no_level"] += 1
            return
        self._open[key] = room
        if voice == 0:  # unvoiced: what the source sends while its speaker is quiet
            quiet = room.quiet.get(pid)
            quiet = room.quiet[pid] = level if quiet is None else max(level, quiet - QUIET_RELAX)
            room.silence[pid] = (round(quiet), 0)
        elif voice < 0 or type(room.silence.get(pid)) is not tuple:
            room.silence[pid] = _SILENT if voice > 0 else _SILENT_WITHOUT_V
        frames = room.ticks.setdefault(tick, {})
        old = frames.get(pid)
        if type(old) is _Pcm:
            return  # a level beside decoded audio in one tick: the audio is kept
        # two packets in one tick (10 ms packets, or a duplicate): the louder, voiced if any
        frames[pid] = (level, voice) if old is None else (min(old[0], level),
                                                          max(old[1], voice))

    def _sequence(self, stream: _Stream, sequence: int) -> bool:
        """Account for ``sequence`` in the stream's window (RFC 3550 appendix A.1): loss,
        reordering, jumps. False for a duplicate (dropped)."""
        if stream.sequence < 0:
            stream.sequence = stream.first = sequence
            stream.received, stream.jump_to = _ALL_RECEIVED, -1
            return True
        seq = _unwrap(sequence, stream.sequence, 2**16)
        ahead = seq - stream.sequence
        if ahead > MAX_DROPOUT or ahead < -MAX_MISORDER:
            if sequence != stream.jump_to:  # one odd packet: placed, not counted
                stream.jump_to = (sequence + 1) % 2**16
                return True
            self._settle(stream)  # the sender restarted its sequence numbers
            stream.sequence = stream.first = sequence
            stream.received, stream.jump_to = _ALL_RECEIVED, -1
            return True
        stream.jump_to = -1
        if ahead > 0:
            out = min(ahead, SEQUENCE_WINDOW)  # bits shifted out of the window, oldest first
            kept = (stream.received >> (SEQUENCE_WINDOW - out)).bit_count()
            self.lost += out - kept + max(0, ahead - SEQUENCE_WINDOW)
            stream.received = ((stream.received << ahead) | 1) & _ALL_RECEIVED
            stream.sequence = seq
            return True
        bit = 1 << -ahead
        if seq < stream.first:  # before the first packet, whose older bits start set:
            # those between this one and the first are holes from now on
            lo, hi = stream.sequence - stream.first + 1, stream.sequence - seq
            stream.received &= ~(((1 << hi) - 1) ^ ((1 << lo) - 1))
            stream.first = seq
        elif -ahead < SEQUENCE_WINDOW and stream.received & bit:
            return False
        self.counts["reordered"] += 1
        stream.received |= bit & _ALL_RECEIVED  # (older than the window: counted lost)
        return True

    def _settle(self, stream: _Stream) -> None:
        """The end of a stream's sequence numbers: what its window still lacks is lost."""
        if stream.sequence >= 0:
            self.lost += SEQUENCE_WINDOW - stream.received.bit_count()
        stream.sequence, stream.received, stream.jump_to = -1, 0, -1

    def jitter_ms(self, ssrc: SourceKey) -> float:
        """The RFC 3550 interarrival jitter of ``ssrc`` in ms (0.0 before two packets)."""
        stream, src = self._streams.get(ssrc), self.sources.get(ssrc)
        if stream is None or src is None:
            return 0.0
        return stream.jitter * 1000.0 / src.clock_rate_hz

    # ------------------------------------------------------------------ ticks
    def closed(self, now_s: float) -> dict[str, pb.StreamRequest]:
        """The ticks that closed by ``now_s``, one request per tenant (rooms in the order
        they first had a packet, each room's ticks in order), and LEAVE events for sources
        silent for ``LEAVE_AFTER_S``."""
        self._leave_silent(now_s)
        out: dict[str, pb.StreamRequest] = {}
        for key, room in list(self._open.items()):
            due = _wall_due(room, now_s, self.late_wait_ms)
            present = room.latest_tick
            if present:
                due = max(due, min(room.ready.values()))  # every source's packets are in
                if min(present.values()) + DTX_TICKS < due:
                    self._fill_silence(room, due)
            ticks = sorted(k for k in room.ticks if k < due)
            if not ticks and not room.leaving:
                if not self._may_fall_silent(room):
                    del self._open[key]
                continue
            req = out.get(room.tenant)
            if req is None:
                req = out[room.tenant] = pb.StreamRequest()
            roster = tuple(present)  # who has sent packets, in the order they joined
            for k in ticks:
                t = req.ticks.add(room_id=room.room_id, timestamp_ms=k * TICK_MS,
                                  duration_ms=TICK_MS)
                frames = room.ticks.pop(k)
                if len(frames) == len(roster) and all(
                        type(f) is tuple and f[1] >= 0 for f in frames.values()) \
                        and frames.keys() == present.keys():
                    # everyone has a level with its V bit: the compact form media servers
                    # send (one byte each, the roster only when it changed), which the
                    # registry reads without a protobuf object per participant
                    t.levels.levels = bytes([(frames[p][1] << 7) | frames[p][0]
                                             for p in roster])
                    if roster != room.sent_roster:
                        t.levels.roster.extend(roster)
                        room.sent_roster = roster
                    continue
                for pid, frame in sorted(frames.items()):
                    a = t.audio.add(participant_id=pid)
                    if type(frame) is _Pcm:
                        a.pcm.samples = _one_tick(frame)
                        a.pcm.sample_rate_hz = frame.rate
                        continue
                    level, voice = frame
                    a.level.level = level
                    a.level.voice = VOICE.get(voice, pb.VOICE_ACTIVITY_UNSPECIFIED)
            if room.leaving:  # after the levels, at the room's media time
                t = req.ticks.add(room_id=room.room_id, timestamp_ms=(
                    ticks[-1] if ticks else max(room.next_tick, due)) * TICK_MS)
                for pid in room.leaving:
                    t.events.add(participant_id=pid,
                                 type=pb.ParticipantEventType.PARTICIPANT_EVENT_TYPE_LEAVE)
                    _forget(room, pid)
                room.leaving.clear()
            room.next_tick = max(room.next_tick, ticks[-1] + 1 if ticks else 0)
            if not room.ticks and not self._may_fall_silent(room):
                del self._open[key]
        return out

    @staticmethod
    def _fill_silence(room: _Room, due: int) -> None:
        """Digital silence in the ticks before ``due`` for each participant that has sent
        no packet for DTX_MS of media time before them."""
        for pid, last in room.latest_tick.items():
            _silence(room, pid, last, due)

    @staticmethod
    def _may_fall_silent(room: _Room) -> bool:
        """Whether a participant of the room may still get silence filled in (so the room
        must stay among those ``closed`` looks at)."""
        return any(last + _SILENT_TICKS > room.next_tick and pid in room.silence
                   for pid, last in room.latest_tick.items())

    def _leave_silent(self, now_s: float) -> None:
        if now_s - self._leave_checked_s < LEAVE_CHECK_S:
            return
        since, self._leave_checked_s = self._leave_checked_s, now_s
        samples = self.jitter_samples
        for ssrc, stream in self._streams.items():
            if stream.last_packet_s > since and stream.transit is not None \
                    and len(samples) < JITTER_SAMPLES_MAX:
                src = self.sources.get(ssrc)
                if src is not None:
                    samples.append(stream.jitter / src.clock_rate_hz)
            if stream.joined and now_s - stream.last_packet_s >= LEAVE_AFTER_S:
                src = self.sources.get(ssrc)
                stream.joined = False
                stream.timestamp = -1  # it comes back anchored afresh
                self._settle(stream)
                self._opus_decoders.pop(ssrc, None)  # and decoded afresh
                if src is not None:
                    room = self._rooms.get((src.tenant, src.room_id))
                    if room is not None and src.participant_id not in room.leaving:
                        room.leaving.append(src.participant_id)
                        self._open[(room.tenant, room.room_id)] = room
