"""``speakerswitch watch``: a live terminal view of one room, fed by ``Watch``."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..api import speakerswitch_pb2 as pb

BAR_WIDTH = 24


def _reason(r: int) -> str:
    return pb.SwitchReason.Name(r)[len("SWITCH_REASON_"):]


@dataclass
class RoomView:
    room_id: str = ""
    t_ms: int = 0
    sequence: int = 0
    shown: str = ""
    audio: str = ""
    pinned: str = ""
    presenter: str = ""
    forwarding: list[str] = field(default_factory=list)
    ranked: list[tuple[str, float, bool, float]] = field(default_factory=list)
    speaking: set[str] = field(default_factory=set)
    switches: deque = field(default_factory=lambda: deque(maxlen=6))

    def apply(self, e: pb.RoomEvent) -> None:
        self.room_id = e.room_id or self.room_id
        self.t_ms = max(self.t_ms, e.timestamp_ms)
        self.sequence = e.snapshot.sequence if e.HasField("snapshot") else e.sequence
        kind = e.WhichOneof("event")
        if kind == "snapshot":
            s = e.snapshot
            self.shown, self.audio, self.pinned = s.speaker_id, s.audio_speaker_id, s.pinned_id
            self.presenter, self.forwarding = s.presenter_id, list(s.forwarding)
            self.ranked = [(r.participant_id, r.level_dbov, r.speaking, r.activity)
                           for r in s.active_speakers]
            self.speaking = {p.participant_id for p in s.participants if p.speaking}
        elif kind == "switch":
            self.shown = e.switch.speaker_id
            self.audio = e.switch.audio_speaker_id
            self.switches.appendleft((e.timestamp_ms, e.switch.previous_speaker_id,
                                      e.switch.speaker_id, _reason(e.switch.reason)))
        elif kind == "floor_change":
            self.audio = e.floor_change.speaker_id
        elif kind == "active_speakers":
            self.ranked = [(r.participant_id, r.level_dbov, r.speaking, r.activity)
                           for r in e.active_speakers.speakers]
        elif kind == "speaking_changed":
            (self.speaking.add if e.speaking_changed.speaking
             else self.speaking.discard)(e.speaking_changed.participant_id)
        elif kind == "presentation":
            self.presenter = e.presentation.presenter_id
        elif kind == "forwarding":
            self.forwarding = list(e.forwarding.participant_ids)

    def render(self) -> str:
        audio = "" if self.audio in ("", self.shown) else f"  (floor: {self.audio}, camera off)"
        lines = [f"room {self.room_id}   media time {self.t_ms / 1000:8.1f} s   seq {self.sequence}",
                 f"shown: {self.shown or '-'}{audio}"]
        if self.pinned:
            lines.append(f"pinned: {self.pinned}")
        if self.presenter:
            lines.append(f"presenting: {self.presenter} (speaker in the thumbnail)")
        lines.append(f"forwarding: {', '.join(self.forwarding) or '-'}")
        lines.append("")
        lines.append("active speakers")
        for pid, level, speaking, activity in self.ranked:
            filled = int(round(BAR_WIDTH * max(0.0, min(1.0, (level + 80) / 80))))
            mark = "*" if speaking else " "
            lines.append(f" {mark} {pid[:16]:16} {'#' * filled}{'.' * (BAR_WIDTH - filled)} "
                         f"{level:6.1f} dBov  {activity:4.2f}")
        lines.append("")
        lines.append("recent switches")
        for t, prev, new, reason in self.switches:
            lines.append(f"  {t / 1000:8.1f} s  {prev or '-'} -> {new or '-'}  ({reason})")
        return "\n".join(lines)
