"""What was pushed since the last flush, turned into one ``StreamRequest`` per stream.

No I/O and no clock: the client calls ``add_*`` per packet and ``take()`` once per tick.
Packets are grouped by room and by tick (``timestamp_ms`` rounded down to ``tick_ms``), so a
flush of 300 rooms is one message of 300 ``RoomTick``s, not 300 messages.
"""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from .api import speakerswitch_pb2 as pb

VOICE_BIT = 0x80
"""RFC 6464: bit 7 of the level byte is the sender's voice-activity flag."""
MAX_TICKS_PER_REQUEST = 5000
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Well inside the server's defaults (20,000 ticks, 200,000 entries, 16 MiB): reached when
ticks pile up while the server is away (300 rooms of 20 ms ticks make 5,000 in 0.33 s)."""


@dataclass
class _Tick:
    """One room's pending tick. ``levels`` maps participant -> RFC 6464 byte (V bit set
    or not) for senders that said; ``unspecified`` holds levels of senders without a V bit
    (they cannot go in a LevelVector)."""
    timestamp_ms: int
    levels: dict[str, int] = field(default_factory=dict)
    unspecified: dict[str, int] = field(default_factory=dict)
    pcm: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    events: list[tuple[str, int]] = field(default_factory=list)
    config: pb.RoomConfig | None = None
    repeat: bool = False
    """At the timestamp of the room's last audio tick sent: events only, no audio."""

    def packets(self) -> int:
        return (len(self.levels) + len(self.unspecified) + len(self.pcm) + len(self.events)
                + (self.config is not None))


@dataclass
class Built:
    """A request and, per tick, the roster its LevelVector's bytes are in (None: no vector).
    The stream fills ``levels.roster`` in only where the server does not hold that roster
    yet (it is sticky per room on the server, and lost with a restarted server)."""
    request: pb.StreamRequest
    rosters: list[tuple[str, ...] | None]
    sent_s: float = 0.0
    """When it was queued to the stream (perf_counter), for the round trip."""
    answer: concurrent.futures.Future | None = None
    """Set to the server's answer (or the stream's fatal error) by the stream, for a caller
    that waits for it (the blocking sessions of ``speakerswitch_client.sync``)."""


class Batcher:
    """Pending ticks of any number of rooms.

    A packet for a tick that was already sent is dropped and counted in ``late``: the
    server keeps a participant's state across a gap (packet loss), and a tick going back in
    time would be refused. Two packets of one participant in one tick (10 ms packets, 20 ms
    ticks) keep the louder level, with voice if either had it."""

    def __init__(self, tick_ms: int = 20) -> None:
        if tick_ms not in (10, 20, 30):
            raise ValueError(f"tick_ms: {tick_ms} is not 10, 20 or 30")
        self.tick_ms = tick_ms
        self.pending: dict[str, dict[int, _Tick]] = {}
        self.packets = 0
        """Packets and events waiting for the next ``take``."""
        self.late = 0
        self._sent: dict[str, int] = {}      # room -> timestamp of its last audio tick sent
        self._rosters: dict[str, tuple[str, ...]] = {}  # room -> order of its LevelVectors

    def _tick(self, room: str, timestamp_ms: int | None, audio: bool) -> _Tick | None:
        ticks = self.pending.get(room)
        if ticks is None:
            ticks = self.pending[room] = {}
        sent = self._sent.get(room, -1)
        if timestamp_ms is None:  # an event: with the room's newest tick, or on its own
            t = max(ticks) if ticks else max(sent, 0)
        else:
            if timestamp_ms < 0:
                raise ValueError(f"timestamp_ms: {timestamp_ms} is negative")
            t = timestamp_ms - timestamp_ms % self.tick_ms
            if t <= sent:
                if audio:
                    self.late += 1
                    return None
                t = sent  # events-only ticks may repeat the last timestamp
        tick = ticks.get(t)
        if tick is None:
            tick = ticks[t] = _Tick(t, repeat=t <= sent)
        elif audio and tick.repeat:  # timestamp None: an event (no audio) came first
            self.late += 1
            return None
        return tick

    def add_level(self, room: str, participant: str, level: int, voice: bool | None,
                  timestamp_ms: int) -> bool:
        """False if the packet came too late for its tick (dropped)."""
        if not 0 <= level <= 127:
            raise ValueError(f"level: {level} is not 0..127 (-dBov, RFC 6464)")
        # the usual case first (called per packet): a tick of the room already pending
        ticks = self.pending.get(room)
        tick = None if ticks is None else ticks.get(timestamp_ms - timestamp_ms % self.tick_ms)
        if tick is None or tick.repeat:
            tick = self._tick(room, timestamp_ms, True)
            if tick is None:
                return False
        if voice is None:
            old = tick.unspecified.get(participant)
            if old is None:
                self.packets += 1
            tick.unspecified[participant] = level if old is None else min(old, level)
            return True
        byte = level | (VOICE_BIT if voice else 0)
        old = tick.levels.get(participant)
        if old is None:
            self.packets += 1
        else:  # louder level (smaller -dBov), voice if either packet had it
            byte = min(old & 0x7F, level) | ((old | byte) & VOICE_BIT)
        tick.levels[participant] = byte
        return True

    def add_pcm(self, room: str, participant: str, samples: bytes, sample_rate_hz: int,
                timestamp_ms: int) -> bool:
        expected = sample_rate_hz * self.tick_ms // 1000 * 2
        if sample_rate_hz not in (8000, 16000, 32000, 48000):
            raise ValueError(f"sample_rate_hz: {sample_rate_hz} is not 8000, 16000, 32000 "
                             "or 48000")
        if len(samples) != expected:
            raise ValueError(f"samples: {len(samples)} bytes, not {expected} (one tick of "
                             f"{self.tick_ms} ms of 16-bit mono at {sample_rate_hz} Hz)")
        tick = self._tick(room, timestamp_ms, True)
        if tick is None:
            return False
        if participant not in tick.pcm:
            self.packets += 1
        tick.pcm[participant] = (samples, sample_rate_hz)
        return True

    def add_event(self, room: str, participant: str, kind: int,
                  timestamp_ms: int | None = None) -> None:
        self._tick(room, timestamp_ms, False).events.append((participant, kind))
        self.packets += 1

    def set_config(self, room: str, config: pb.RoomConfig) -> None:
        tick = self._tick(room, None, False)
        if tick.config is None:
            self.packets += 1
            tick.config = pb.RoomConfig()
        tick.config.MergeFrom(config)

    def forget(self, room: str) -> None:
        """The room was closed: a later tick of the same id starts a new room at any time."""
        self.packets -= sum(t.packets() for t in self.pending.pop(room, {}).values())
        self._sent.pop(room, None)
        self._rosters.pop(room, None)

    def take(self, group=None) -> dict[object, list[Built]]:
        """Everything pending as requests, per value of ``group(room)`` (all together when
        ``group`` is None), and forget it. Usually one request per group; more only after
        the server was away for a while, so that none goes over the server's limits."""
        out: dict[object, list[Built]] = {}
        size: dict[object, int] = {}
        for room, ticks in self.pending.items():
            key = group(room) if group is not None else None
            requests = out.get(key)
            if requests is None:
                requests = out[key] = [Built(pb.StreamRequest(), [])]
                size[key] = 0
            for t in sorted(ticks):
                tick = ticks[t]
                cost = len(room) + 16 * (len(tick.levels) + len(tick.unspecified)
                                         + len(tick.events))
                if tick.pcm:
                    cost += sum(16 + len(samples) for samples, _ in tick.pcm.values())
                built = requests[-1]
                if built.rosters and (len(built.rosters) >= MAX_TICKS_PER_REQUEST
                                      or size[key] + cost > MAX_REQUEST_BYTES):
                    built = Built(pb.StreamRequest(), [])
                    requests.append(built)
                    size[key] = 0
                size[key] += cost
                built.rosters.append(self._fill(built.request.ticks.add(), room, tick))
        self.pending.clear()
        self.packets = 0
        return out

    def _fill(self, msg: pb.RoomTick, room: str, tick: _Tick) -> tuple[str, ...] | None:
        msg.room_id, msg.timestamp_ms, msg.duration_ms = room, tick.timestamp_ms, self.tick_ms
        for participant, kind in tick.events:
            msg.events.add(participant_id=participant, type=kind)
        if tick.config is not None:
            msg.config.CopyFrom(tick.config)
        audio = tick.levels or tick.unspecified or tick.pcm
        if audio:
            self._sent[room] = tick.timestamp_ms
        for participant, level in tick.unspecified.items():
            msg.audio.add(participant_id=participant, level=pb.AudioLevel(level=level))
        for participant, (samples, rate) in tick.pcm.items():
            msg.audio.add(participant_id=participant,
                          pcm=pb.PcmFrame(samples=samples, sample_rate_hz=rate))
        if not tick.levels:
            return None
        roster = self._rosters.get(room)
        if roster is not None and len(roster) == len(tick.levels):
            if roster == tuple(tick.levels):  # the usual case: the same senders, in order
                msg.levels.levels = bytes(tick.levels.values())
                return roster
            if all(p in tick.levels for p in roster):  # the same, in another order
                msg.levels.levels = bytes(tick.levels[p] for p in roster)
                return roster
        if roster is not None and all(p in roster for p in tick.levels):
            # some senders are silent (DTX, loss): keep the roster, send these one by one
            for participant, byte in tick.levels.items():
                msg.audio.add(participant_id=participant, level=pb.AudioLevel(
                    level=byte & 0x7F, voice=pb.VOICE_ACTIVITY_PRESENT if byte & VOICE_BIT
                    else pb.VOICE_ACTIVITY_ABSENT))
            return None
        roster = self._rosters[room] = tuple(tick.levels)
        msg.levels.levels = bytes(tick.levels.values())
        return roster
