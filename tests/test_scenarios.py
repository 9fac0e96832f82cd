"""Scripted multi-participant conversations through the registry (the path every caller
uses): turns, interjections, noise, video off, pin, mute, leave."""
import pytest

from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry

from conftest import level_tick, script_levels, switches

ET = pb.ParticipantEventType
ABC = ["a", "b", "c"]


def run(ticks, registry=None, per_batch=1):
    reg = registry or RoomRegistry()
    events = []
    for k in range(0, len(ticks), per_batch):
        resp = reg.process(pb.StreamRequest(batch_id=k, ticks=ticks[k:k + per_batch]))
        assert not resp.rejections, resp.rejections
        events.extend(resp.events)
    return events, reg


def with_events(tick, *events):
    for pid, kind in events:
        tick.events.add(participant_id=pid, type=kind)
    return tick


def test_clean_turns_switch_within_300_ms_of_each_onset():
    ticks = script_levels("r", [("a", 0, 3000), ("b", 3500, 6000), ("c", 6500, 9000)], ABC, 9500)
    sw = switches(run(ticks)[0])
    assert [s for _, s in sw] == ["a", "b", "c"]
    for (t, _), onset in zip(sw, (0, 3500, 6500)):
        assert onset < t <= onset + 300


def test_louder_short_interjection_never_switches():
    ticks = script_levels("r", [("a", 0, 6000)], ABC, 6000)
    for t in ticks:      # b shouts "yeah" 15 dB louder for 400 ms while a talks
        if 2000 <= t.timestamp_ms < 2400:
            for au in t.audio:
                if au.participant_id == "b":
                    au.level.level, au.level.voice = 10, pb.VOICE_ACTIVITY_PRESENT
    assert [s for _, s in switches(run(ticks)[0])] == ["a"]


def test_interjection_in_a_breathing_pause_never_switches():
    # a pauses 300 ms between sentences; c says "mm" (300 ms) right in the pause
    ticks = script_levels("r", [("a", 0, 3000), ("c", 3050, 3350), ("a", 3300, 6000)], ABC, 6000)
    assert [s for _, s in switches(run(ticks)[0])] == ["a"]


SYLLABLES = (22, 28, 34, 26)
"""RFC 6464 levels (-dBov) of modulated speech, one per 20 ms frame: jumps of 4-8 dB."""


def breath_then_turn(holder_syllables: tuple[int, ...]) -> list[pb.RoomTick]:
    """a talks until 2 s; b breathes in (a smooth voiced swell, 60 -> 48 -> 60, 500 ms) from
    2.4 s, so that a's hold runs out in the middle of it, then talks from 3 s."""
    ticks = []
    for t in range(0, 5000, 20):
        k = t // 20
        a = holder_syllables[k % len(holder_syllables)] if t < 2000 else 70
        if 2400 <= t < 2900:
            b = 48 + abs(t - 2650) // 21
        elif t >= 3000:
            b = SYLLABLES[k % len(SYLLABLES)]
        else:
            b = 70
        ticks.append(level_tick("r", t, {"a": a, "b": b, "c": 70},
                                {"a": int(a < 70), "b": int(b < 70), "c": 0}, duration_ms=20))
    return ticks


def test_a_smooth_breath_before_a_turn_does_not_take_the_screen():
    # b's level is unknown before its breath, so only the breath's smoothness tells it from
    # speech: without that, b would be shown at 2.8 s, 200 ms before it says anything
    sw = switches(run(breath_then_turn(SYLLABLES))[0])
    assert [p for _, p in sw] == ["a", "b"]
    assert 3000 < sw[1][0] <= 3100


def test_modulation_is_not_asked_of_a_room_whose_holder_sends_smooth_levels():
    # levels averaged by the sender are smooth for everyone: the breath is not told apart
    sw = switches(run(breath_then_turn((25,)))[0])
    assert [p for _, p in sw] == ["a", "b"]
    assert 2700 <= sw[1][0] < 2800


def test_a_door_slam_before_a_first_word_does_not_make_the_speaker_inaudible():
    # b's first voiced sound is a door slam (-4 dBov, decaying 1 dB a frame); b then speaks
    # at -24..-30 dBov. Had the slam set b's own speech level, b's voice would sit 20 dB
    # under it, below the own-speech gate, and b would not be shown for seconds.
    ticks = []
    for t in range(0, 8000, 20):
        k = t // 20
        a = SYLLABLES[k % len(SYLLABLES)] if t < 5000 else 70
        if 1000 <= t < 1900:
            b = 4 + (t - 1000) // 20
        elif t >= 5500:
            b = (24, 30, 26, 28)[k % 4]
        else:
            b = 70
        ticks.append(level_tick("r", t, {"a": a, "b": b, "c": 70},
                                {"a": int(a < 70), "b": int(b < 70), "c": 0}, duration_ms=20))
    sw = switches(run(ticks)[0])
    assert [p for _, p in sw] == ["a", "b"]
    assert 5500 < sw[1][0] <= 5800


def test_an_interrupter_that_outlasts_the_holder_switches_250_ms_after_it_stops():
    # b talks over a from 1.7 s; a stops at 3 s: b has talked 1.3 s (>= interrupt_ms) and
    # outlasted a, so it needs a's outlast_ms (250 ms) of silence, not its hold_ms (700)
    ticks = script_levels("r", [("a", 0, 3000), ("b", 1700, 4500)], ABC, 5000)
    assert switches(run(ticks)[0]) == [(120, "a"), (3260, "b")]



@pytest.mark.parametrize("b_start,switch_ms", [
    # b's talk plus a's silence (a's last speech frame ends at 3 s) reach outlast_total_ms
    # (1.5 s) at 3.6 s, before a's hold (700 ms) ends
    (2700, 3600),
    # a 500 ms overlap: 3.5 s (it waited for b to have talked interrupt_ms (1.2 s), 3.7 s)
    (2500, 3500),
    # b starts 100 ms after a stops: a's hold ends first (3.7 s; b's sum 1.5 s at 3.8 s)
    (3100, 3700)])
def test_a_short_overlap_switches_once_talk_and_silence_add_up_or_at_the_hold(
        b_start, switch_ms):
    ticks = script_levels("r", [("a", 0, 3000), ("b", b_start, 4500)], ABC, 5000)
    assert switches(run(ticks)[0]) == [(120, "a"), (switch_ms, "b")]


@pytest.mark.parametrize("overlap_margin_db,switched", [
    (9.0, False),    # the default: echo (25 dB below a) is not talk over a
    (40.0, True)])   # echo counted as talk over a: the remark 'outlasts' a
def test_echo_of_the_holder_is_no_talk_over_it(monkeypatch, overlap_margin_db, switched):
    # b's microphone carries a's voice 25 dB down from 2.4 s (its echo canceller lost
    # track: b is 'speaking' through a's last 600 ms, too short for the echo gate of
    # dsp.activity to learn b's coupling, which takes ~0.5 s at this depth); a stops at
    # 3 s, b says a 250 ms remark from 3.3 s, which ends before a's hold (700 ms): it must
    # not take the floor
    from dsp import tuning
    monkeypatch.setitem(tuning.PROFILES, "meeting",
                        tuning.Tuning(overlap_margin_db=overlap_margin_db))
    ticks = []
    for t in range(0, 5000, 20):
        a = 20 if t < 3000 else 70
        b = 45 if 2400 <= t < 3040 else 30 if 3300 <= t < 3550 else 70
        ticks.append(level_tick("r", t, {"a": a, "b": b, "c": 70},
                                {"a": int(a < 70), "b": int(b < 70), "c": 0},
                                duration_ms=20))
    sw = switches(run(ticks)[0])
    assert [p for _, p in sw] == (["a", "b"] if switched else ["a"])
    if switched:
        assert 3300 < sw[1][0] < 3550


def test_a_failed_interruption_that_ends_first_never_switches():
    ticks = script_levels("r", [("a", 0, 3000), ("b", 1500, 2700)], ABC, 4000)
    assert switches(run(ticks)[0]) == [(120, "a")]


def test_a_participant_with_a_loud_fan_never_takes_the_screen():
    ticks = script_levels("r", [("a", 0, 3000), ("b", 3500, 6000)], ABC, 6000)
    for t in ticks:     # c: steady -38 dBov fan noise, no V bit (energy detection only)
        for au in t.audio:
            if au.participant_id == "c":
                au.level.level, au.level.voice = 38, pb.VOICE_ACTIVITY_UNSPECIFIED
    assert [s for _, s in switches(run(ticks)[0])] == ["a", "b"]


def test_several_ticks_per_batch_give_the_same_decisions():
    ticks = script_levels("r", [("a", 0, 2000), ("b", 2500, 5000), ("a", 5600, 7000)], ABC, 7000)
    one = run(ticks, per_batch=1)[0]
    many = run(ticks, per_batch=37)[0]
    assert [str(e) for e in one] == [str(e) for e in many]


def test_video_off_speaker_takes_the_floor_but_not_the_feed():
    ticks = script_levels("r", [("a", 0, 2000), ("b", 2500, 5000)], ABC, 5000)
    with_events(ticks[0], ("b", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF))
    events, reg = run(ticks)
    assert [s for _, s in switches(events)] == ["a"]
    floor = [e.floor_change for e in events if e.HasField("floor_change")]
    assert [(f.speaker_id, f.has_video) for f in floor] == [("a", True), ("b", False)]
    assert reg.room_state("r").audio_speaker_id == "b"
    # b turns the camera on while holding the floor: shown at once
    tick = with_events(pb.RoomTick(room_id="r", timestamp_ms=5000),
                       ("b", ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON))
    more, _ = run([tick], reg)
    assert [(e.timestamp_ms, e.switch.speaker_id, e.switch.reason)
            for e in more if e.HasField("switch")] == [(5000, "b", pb.SWITCH_REASON_VIDEO_ON)]


def test_shown_participant_turning_video_off_hands_over_at_once():
    ticks = script_levels("r", [("b", 0, 1500), ("a", 2000, 4000)], ABC, 4000)
    events, reg = run(ticks)
    assert switches(events)[-1][1] == "a"
    tick = with_events(pb.RoomTick(room_id="r", timestamp_ms=4000),
                       ("a", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF))
    more, _ = run([tick], reg)
    sw = [e.switch for e in more if e.HasField("switch")]
    assert [(s.speaker_id, s.previous_speaker_id, s.reason) for s in sw] == [
        ("b", "a", pb.SWITCH_REASON_VIDEO_OFF)]      # b spoke most recently among the others


def test_pin_holds_the_feed_and_unpin_goes_to_the_current_speaker():
    ticks = script_levels("r", [("a", 0, 2000), ("b", 2500, 5000)], ABC, 5000)
    with_events(ticks[0], ("c", ET.PARTICIPANT_EVENT_TYPE_PIN))
    events, reg = run(ticks)
    sw = [(e.switch.speaker_id, e.switch.reason) for e in events if e.HasField("switch")]
    assert sw == [("c", pb.SWITCH_REASON_PINNED)]
    assert reg.room_state("r").audio_speaker_id == "b"   # detection ran underneath
    tick = with_events(pb.RoomTick(room_id="r", timestamp_ms=5000),
                       ("", ET.PARTICIPANT_EVENT_TYPE_UNPIN))
    tick.events[0].participant_id = "c"
    more, _ = run([tick], reg)
    assert [(e.switch.speaker_id, e.switch.reason) for e in more if e.HasField("switch")] == [
        ("b", pb.SWITCH_REASON_UNPINNED)]


def test_muted_speaker_stops_at_once_and_the_next_one_switches_fast():
    ticks = script_levels("r", [("a", 0, 5000), ("b", 3000, 5000)], ABC, 5000)
    # a is muted at 3000 while still "talking" (its client keeps sending levels)
    with_events(ticks[150], ("a", ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED))
    events, _ = run(ticks)
    at_mute = [e for e in events if e.timestamp_ms == 3000]
    assert any(e.HasField("speaking_changed") and e.speaking_changed.participant_id == "a"
               and not e.speaking_changed.speaking for e in at_mute)
    sw = switches(events)
    assert [s for _, s in sw] == ["a", "b"]
    assert sw[1][0] <= 3000 + 300       # no interrupt_ms wait: a no longer counts


def test_shown_speaker_leaving_hands_over_in_one_switch():
    ticks = script_levels("r", [("b", 0, 1500), ("a", 2000, 4000)], ABC, 4000)
    events, reg = run(ticks)
    tick = with_events(pb.RoomTick(room_id="r", timestamp_ms=4000),
                       ("a", ET.PARTICIPANT_EVENT_TYPE_LEAVE))
    more, _ = run([tick], reg)
    sw = [e.switch for e in more if e.HasField("switch")]
    assert [(s.speaker_id, s.previous_speaker_id, s.reason) for s in sw] == [
        ("b", "a", pb.SWITCH_REASON_LEFT)]
    assert {p.participant_id for p in reg.room_state("r").participants} == {"b", "c"}


def test_sequence_numbers_are_contiguous_per_room():
    ticks = (script_levels("x", [("a", 0, 2000), ("b", 2500, 4000)], ABC, 4000)
             + script_levels("y", [("c", 0, 1000), ("a", 1500, 4000)], ABC, 4000))
    events, _ = run(sorted(ticks, key=lambda t: t.timestamp_ms), per_batch=2)
    for room in ("x", "y"):
        seqs = [e.sequence for e in events if e.room_id == room]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 3


def test_active_speakers_rank_the_talker_first_and_are_rate_limited():
    ticks = script_levels("r", [("a", 0, 1000), ("b", 1000, 3000)], ABC, 3000)
    events, _ = run(ticks)
    ranked = [e for e in events if e.HasField("active_speakers")]
    times = [e.timestamp_ms for e in ranked]
    assert all(b - a >= 200 for a, b in zip(times, times[1:]))
    last = ranked[-1].active_speakers.speakers
    assert last[0].participant_id == "b" and last[0].speaking


def test_per_room_config_changes_the_decision():
    # with interrupt_ms=300, b's 600 ms interjection over a does switch
    segs = [("a", 0, 4000), ("b", 2000, 2600)]
    ticks = script_levels("r", segs, ABC, 4000)
    for t in ticks:
        if 2000 <= t.timestamp_ms < 2600:
            for au in t.audio:
                if au.participant_id == "b":
                    au.level.level = 10
    assert [s for _, s in switches(run(ticks)[0])] == ["a"]
    ticks2 = script_levels("r", segs, ABC, 4000)
    for t, t0 in zip(ticks2, ticks):
        t.CopyFrom(t0)
    ticks2[0].config.interrupt_ms = 300
    assert [s for _, s in switches(run(ticks2)[0])][:2] == ["a", "b"]


@pytest.mark.parametrize("profile", ["meeting", "podcast", "debate"])
def test_every_profile_follows_clean_turns(profile):
    ticks = script_levels("r", [("a", 0, 3000), ("b", 4000, 7000)], ABC, 7000)
    ticks[0].config.profile = profile
    assert [s for _, s in switches(run(ticks)[0])] == ["a", "b"]


@pytest.mark.parametrize("gap_ms", [100, 300])
def test_a_gap_of_digital_silence_between_the_holders_words_is_no_opening(gap_ms):
    # a's microphone sends zeros between words (a noise gate, Opus DTX through the RTP
    # ingest); b coughs, louder, across a's gap (up to 300 ms between words): a keeps the
    # floor, as in any pause (with silent_hold_ms at 250, b took it across the 300 ms gap)
    ticks = script_levels("r", [("a", 0, 2000), ("a", 2000 + gap_ms, 4000),
                                ("b", 1960, 2000 + gap_ms + 100)], ABC, 4500, quiet_level=127)
    assert switches(run(ticks)[0]) == [(120, "a")]


@pytest.mark.parametrize("b_start,switch_ms", [
    (2000, 2500),   # a's zeros have lasted silent_hold_ms (500 ms): b needs min_speech_ms only
    (2500, 2620)])  # by then a is as good as muted: b's turn is shown as after a mute
def test_a_holder_that_stays_digitally_silent_hands_over_after_silent_hold_ms(b_start, switch_ms):
    ticks = script_levels("r", [("a", 0, 2000), ("b", b_start, 4000)], ABC, 4500,
                          quiet_level=127)
    assert switches(run(ticks)[0]) == [(120, "a"), (switch_ms, "b")]


@pytest.mark.parametrize("resume_ms,switched", [
    (3660, False),   # a's voice is back two frames before its hold ends (run not yet 60 ms)
    (3680, False),   # ...one frame before
    (3700, True)])   # a still silent when its hold ends: b, talking, takes the floor
def test_a_holder_whose_voice_is_back_keeps_the_floor_at_the_end_of_its_hold(
        resume_ms, switched):
    # a pauses from 3 s; b, 4 dB louder, remarks from 3.3 s over the end of a's hold (700 ms)
    ticks = []
    for t in range(0, 6000, 20):
        k = t // 20
        a = SYLLABLES[k % len(SYLLABLES)] if t < 3000 or t >= resume_ms else 70
        b = SYLLABLES[k % len(SYLLABLES)] - 4 if 3300 <= t < 4200 else 70
        ticks.append(level_tick("r", t, {"a": a, "b": b, "c": 70},
                                {"a": int(a < 70), "b": int(b < 70), "c": 0}, duration_ms=20))
    sw = switches(run(ticks)[0])
    assert sw[:2] == ([(120, "a"), (3700, "b")] if switched else [(120, "a")])
