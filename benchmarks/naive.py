"""The engine's level-mode logic written the straightforward way: a Python loop over rooms
and participants, one frame at a time. It is the in-run baseline of the performance
benchmarks (what vectorizing buys), not a second implementation to maintain: it covers
the per-frame hot path (noise floor, own speech level, activity, hysteresis, smoothing,
evidence, takeover) with the same formulas and constants."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dsp.tuning import PROFILES

T = PROFILES["meeting"]


def alpha(dt: float, tau: float) -> float:
    return -math.expm1(-dt / tau)


@dataclass
class Participant:
    floor: float = float("nan")
    speech: float = float("nan")
    smooth: float = -127.0
    activity: float = 0.0
    speaking: bool = False
    last_active: float = -1e18
    evidence: float = 0.0


@dataclass
class Room:
    participants: list[Participant] = field(default_factory=list)
    holder: int = -1


def step_room(room: Room, levels: list[float], voices: list[int], t_end: float,
              dt: float = 20.0) -> int | None:
    """One frame for every participant of a room; the new holder if the floor changes."""
    for p, level, voice in zip(room.participants, levels, voices):
        sounding = level > -127.0
        if math.isnan(p.floor) and sounding:
            p.floor = min(level, -60.0)
        snr = level - p.floor
        active = bool(voice) and sounding and snr >= T.min_snr_db and level >= T.min_level_dbov
        if math.isnan(p.speech) and active:
            p.speech = level
        if active:
            a = alpha(dt, T.speech_level_rise_ms if level > p.speech else T.speech_level_fall_ms)
            p.speech += a * (level - p.speech)
            active = level >= p.speech - T.speech_margin_db
        if sounding:
            a = alpha(dt, T.floor_fall_ms if level < p.floor else T.floor_rise_ms)
            p.floor += a * (level - p.floor)
        lv = max(level, -100.0)
        p.smooth += alpha(dt, T.level_attack_ms if lv > p.smooth else T.level_release_ms) * (
            lv - p.smooth)
        target = 1.0 if active else 0.0
        if sounding:
            p.activity += alpha(dt, T.activity_attack_ms if target > p.activity
                                else T.activity_release_ms) * (target - p.activity)
        else:
            p.activity = 0.0
        if active:
            p.last_active = t_end
        p.speaking = sounding and (p.activity > T.speaking_off if p.speaking
                                   else p.activity >= T.speaking_on)
    holder = room.participants[room.holder] if room.holder >= 0 else None
    holder_score = holder.smooth if holder is not None else -math.inf
    best, best_i = 0.0, -1
    for i, p in enumerate(room.participants):
        if i == room.holder:
            p.evidence = 0.0
            continue
        if p.speaking and p.smooth > holder_score + T.switch_margin_db:
            p.evidence += dt
        else:
            p.evidence = max(0.0, p.evidence - T.evidence_decay * dt)
        if t_end - p.last_active <= T.takeover_recency_ms and p.evidence > best:
            best, best_i = p.evidence, i
    quiet = holder is None or t_end - holder.last_active >= T.hold_ms
    need = T.min_speech_ms if quiet else T.interrupt_ms
    if best_i >= 0 and best >= need:
        room.holder = best_i
        for p in room.participants:
            p.evidence = 0.0
        return best_i
    return None


def step_all(rooms: list[Room], levels: list[list[float]], voices: list[list[int]],
             t_end: float) -> int:
    """One tick of every room; returns how many floors changed."""
    changed = 0
    for room, lv, vc in zip(rooms, levels, voices):
        if step_room(room, lv, vc, t_end) is not None:
            changed += 1
    return changed
