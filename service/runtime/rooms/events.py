"""What a room says: the engine's events as messages with the room's participant ids,
numbered in the room's sequence, and handed to the response, the room's history (for
watchers that resume) and its watchers."""
from __future__ import annotations

from dsp import events as ev

from .. import wire
from ...api import speakerswitch_pb2 as pb
from ..metrics import Metrics
from .model import Room

SPEECH_REASONS = (pb.SWITCH_REASON_FIRST_SPEAKER, pb.SWITCH_REASON_DOMINANT_SPEAKER)
_REASONS = {name[len("SWITCH_REASON_"):]: value for name, value in pb.SwitchReason.items()}
"""SwitchReason values by the engine's reason ("DOMINANT_SPEAKER")."""
_REASON_NAMES = {value: name for name, value in _REASONS.items()}
_KINDS = {ev.SwitchDecision: 1, ev.FloorChange: 2, ev.SpeakingChange: 3,
          ev.ActiveSpeakersUpdate: 4, ev.PresentationChange: 5, ev.ForwardingChange: 6}
"""The event classes as service/runtime/_wire.c numbers them."""


def convert(room: Room, events: list[ev.Event], out: list[pb.RoomEvent]) -> None:
    """Engine events -> messages (not numbered yet), with the room's participant ids."""
    names = room.names

    def name(slot: int) -> str:
        return names.get(slot, "") if slot >= 0 else ""

    for e in events:
        m = pb.RoomEvent(room_id=room.room_id, timestamp_ms=e.t_ms)
        if isinstance(e, ev.SwitchDecision):
            sw = m.switch
            sw.speaker_id = name(e.slot)
            sw.previous_speaker_id = name(e.previous)
            sw.reason = pb.SwitchReason.Value("SWITCH_REASON_" + e.reason)
            sw.score = e.score
            sw.audio_speaker_id = name(e.audio_slot)
            sw.speech_onset_ms = e.onset_ms
            sw.slot = pb.VIDEO_SLOT_THUMBNAIL if e.thumbnail else pb.VIDEO_SLOT_MAIN
        elif isinstance(e, ev.FloorChange):
            fc = m.floor_change
            fc.speaker_id = name(e.slot)
            fc.previous_speaker_id = name(e.previous)
            fc.has_video = e.has_video
            fc.score = e.score
            fc.speech_onset_ms = e.onset_ms
        elif isinstance(e, ev.SpeakingChange):
            m.speaking_changed.participant_id = name(e.slot)
            m.speaking_changed.speaking = e.speaking
        elif isinstance(e, ev.ActiveSpeakersUpdate):
            for s, lv, spk, act in zip(e.slots, e.levels_dbov, e.speaking, e.activity):
                m.active_speakers.speakers.add(participant_id=name(s), level_dbov=lv,
                                               speaking=spk, activity=act)
        elif isinstance(e, ev.PresentationChange):
            m.presentation.presenter_id = name(e.slot)
            m.presentation.previous_presenter_id = name(e.previous)
        elif isinstance(e, ev.ForwardingChange):
            m.forwarding.participant_ids.extend(name(s) for s in e.slots)
        out.append(m)


def emit(room: Room, msgs: list[pb.RoomEvent], resp: pb.StreamResponse,
         metrics: Metrics | None) -> None:
    """Number the room's events and hand them to the response and the watchers."""
    for m in msgs:
        room.sequence += 1
        m.sequence = room.sequence
        if m.HasField("switch"):
            observe_switch(metrics, m)
        resp.events.append(m)
        if room.history is not None:
            room.history.append(m)
        if room.watchers:
            room.watchers[:] = [w for w in room.watchers if w(m)]


def encode(room: Room, events: list[ev.Event], out: bytearray,
           metrics: Metrics | None) -> bool:
    """``convert`` then ``emit`` for a room that no watcher and no history needs messages
    of, by service/runtime/_wire.c: the events numbered and appended to ``out`` as
    StreamResponse.events fields, which the caller merges into the response (the same
    response as ``emit``'s). False, having changed nothing, where it does not apply."""
    if room.history is not None or room.watchers:
        return False
    last = wire.encode_events(out, room.room_id, room.names, events, room.sequence, _KINDS,
                              _REASONS)
    if last is None:
        return False
    room.sequence = last
    if metrics is not None:
        for e in events:
            if type(e) is ev.SwitchDecision:
                reason = _REASONS[e.reason]
                _observe(metrics, reason, e.t_ms - e.onset_ms if reason in SPEECH_REASONS
                         else None)
    return True


def observe_switch(metrics: Metrics | None, m: pb.RoomEvent) -> None:
    if metrics is None:
        return
    sw = m.switch
    _observe(metrics, sw.reason, m.timestamp_ms - sw.speech_onset_ms
             if sw.reason in SPEECH_REASONS else None)


def _observe(metrics: Metrics, reason: int, delay_ms: int | None) -> None:
    name = _REASON_NAMES.get(reason)
    if name is None:  # a value the .proto does not name: Name says so, as it always did
        name = pb.SwitchReason.Name(reason)[len("SWITCH_REASON_"):]
    metrics.switches.labels(name).inc()
    if delay_ms is not None:
        metrics.switch_delay.observe(max(0, delay_ms) / 1000)


def room_closed(room: Room, reason: str) -> None:
    """The room's last event, room_closed, numbered and handed to its history and watchers."""
    closed = pb.RoomEvent(room_id=room.room_id, timestamp_ms=room.end_t_ms,
                          room_closed=pb.RoomClosed(reason=reason))
    room.sequence += 1
    closed.sequence = room.sequence
    if room.history is not None:
        room.history.append(closed)
    if room.watchers:
        room.watchers[:] = [w for w in room.watchers if w(closed)]
