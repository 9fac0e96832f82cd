"""A room as a message: its state (GetRoom, the snapshot a Watch starts from, what a replica
publishes for failover) and its line in a list of rooms."""
from __future__ import annotations

import numpy as np

from dsp.engine import Engine
from dsp.state import NEVER_MS
from dsp.tuning import ALGORITHMS

from ...api import speakerswitch_pb2 as pb
from .model import Room
from .validation import TUNING_OVERRIDES


def state_of(room: Room, engine: Engine, default_profile: str) -> pb.RoomState:
    """The room's state: its config (with the profile's values where it overrides none),
    who is shown and holds the floor, pinned, presenting and forwarded, each participant
    and the ranking."""
    room_id = room.room_id
    st = engine.st
    r = room.index
    name = lambda s: room.names.get(int(s), "") if s >= 0 else ""  # noqa: E731
    tuning = engine.tuning(r)
    cfg = pb.RoomConfig(profile=room.config.profile or default_profile,
                        algorithm=ALGORITHMS[tuning.algorithm])
    for k in TUNING_OVERRIDES:
        setattr(cfg, k, type(getattr(cfg, k))(getattr(tuning, k)))
    presenters = st.presenters[r]
    out = pb.RoomState(room_id=room_id, timestamp_ms=room.end_t_ms, sequence=room.sequence,
                       speaker_id=name(st.shown[r]), audio_speaker_id=name(st.holder[r]),
                       pinned_id=name(st.pinned[r]), config=cfg,
                       presenter_id=name(presenters[-1]) if presenters else "",
                       forwarding=[name(s) for s in st.last_forwarding[r]],
                       roster=room.roster)
    # `speaking` as last reported in SpeakingChanged, so a Watch snapshot and the events
    # after it agree; read per column, not per participant (this runs for every room
    # that changed when decisions are shared through Redis)
    slots = np.fromiter(room.slots.values(), np.int64, len(room.slots))
    columns = zip(room.slots, st.reported_speaking[slots].tolist(),
                  st.level_smooth[slots].tolist(),
                  np.nan_to_num(st.noise_floor[slots], nan=-127.0).tolist(),
                  st.video[slots].tolist(), st.muted[slots].tolist(), slots.tolist(),
                  st.last_active_ms[slots].tolist())
    add = out.participants.add
    for pid, speaking, level, floor, video, muted, s, spoke in columns:
        p = add(participant_id=pid, speaking=speaking, level_dbov=level,
                noise_floor_dbov=floor, video=video, muted=muted,
                screen_share=s in presenters)
        if spoke != NEVER_MS:
            p.last_spoke_at_ms = spoke
    slots, levels, speaking, act = engine.ranking(r)
    for s, lv, spk, a in zip(slots, levels, speaking, act):
        out.active_speakers.add(participant_id=name(s), level_dbov=lv, speaking=spk,
                                activity=a)
    return out


def summary_of(room: Room, engine: Engine) -> pb.RoomSummary:
    """The room in a list of rooms: who is shown, how many take part."""
    st = engine.st
    shown = int(st.shown[room.index])
    return pb.RoomSummary(room_id=room.room_id, timestamp_ms=room.end_t_ms,
                          sequence=room.sequence,
                          speaker_id=room.names.get(shown, "") if shown >= 0 else "",
                          participants=len(room.slots))
