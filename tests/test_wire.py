"""service/runtime/_wire.c reads a StreamRequest's steady ticks exactly as protobuf does.

Each tick is either read (room id, timestamp, duration, level bytes: the same values the
protobuf objects give) or left to protobuf (None) because it has anything else. The
registry's responses are the same either way (tests/test_registry_paths.py); here the
scanner itself, on hand-made ticks, random requests and random bytes. The server hands it
the bytes as a client sent them, so wherever protobuf accepts bytes, the scanner must read
them as protobuf does (field order, overlong varints, unknown and repeated fields).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.runtime import wire
from service.api import speakerswitch_pb2 as pb

pytestmark = pytest.mark.skipif(wire._wire is None,
                                reason="service/runtime/_wire.c is not built here")
ET = pb.ParticipantEventType


def scan(request: pb.StreamRequest) -> list:
    return wire._wire.steady_ticks(request.SerializeToString())


def steady_tick(**fields) -> pb.StreamRequest:
    q = pb.StreamRequest(batch_id=7)
    q.ticks.add(**fields)
    return q


def test_a_steady_tick_is_read_with_its_four_fields():
    q = steady_tick(room_id="salle-é", timestamp_ms=123456789012, duration_ms=20,
                    levels=pb.LevelVector(levels=b"\x80\x7f\x20"))
    assert scan(q) == [("salle-é", 123456789012, 20, b"\x80\x7f\x20")]


def test_fields_at_their_defaults_are_read_as_protobuf_reads_them():
    """proto3 leaves zero values off the wire: no timestamp is 0, no duration is 0."""
    q = steady_tick(room_id="r", levels=pb.LevelVector(levels=b"\x10"))
    assert scan(q) == [("r", 0, 0, b"\x10")]
    assert scan(steady_tick(room_id="r", timestamp_ms=-40,
                            levels=pb.LevelVector(levels=b"\x10")))[0][1] == -40
    # levels present but empty: read as b"" (as protobuf does); the registry then finds
    # that its length is not the roster's and takes the full validation
    assert scan(steady_tick(room_id="r", levels=pb.LevelVector())) == [("r", 0, 0, b"")]
    assert scan(steady_tick(room_id="r")) == [None]   # no levels at all


@pytest.mark.parametrize("extra", [
    {"events": [pb.ParticipantEvent(participant_id="a", type=ET.PARTICIPANT_EVENT_TYPE_PIN)]},
    {"audio": [pb.ParticipantAudio(participant_id="a", level=pb.AudioLevel(level=30))]},
    {"config": pb.RoomConfig(profile="debate")},
    {"levels": pb.LevelVector(roster=["a"], levels=b"\x10")},
    {"room_id": ""},
])
def test_anything_else_is_left_to_protobuf(extra):
    fields = {"room_id": "r", "timestamp_ms": 20, "levels": pb.LevelVector(levels=b"\x10")}
    fields.update(extra)
    assert scan(steady_tick(**fields)) == [None]


def test_repeated_or_unknown_fields_are_left_to_protobuf():
    raw = steady_tick(room_id="r", timestamp_ms=20,
                      levels=pb.LevelVector(levels=b"\x10")).SerializeToString()
    tick = raw[raw.index(b"\x12"):]          # the tick's tag, length and body
    body = tick[2:]
    for more in (b"\x10\x28",                # timestamp_ms again (protobuf: the last wins)
                 b"\x0a\x01s",               # room_id again
                 b"\x78\x01",                # field 15: unknown to this version
                 b"\x10\x80\x80\x80\x80\x10"):
        new = body + more
        assert wire._wire.steady_ticks(b"\x12" + bytes([len(new)]) + new) == [None]
    # a duration that does not fit uint32 is truncated by protobuf: left to it
    big = body + b"\x18\x80\x80\x80\x80\x20"
    assert wire._wire.steady_ticks(b"\x12" + bytes([len(big)]) + big) == [None]


def test_columns_of_a_large_batch():
    q = pb.StreamRequest(batch_id=1)
    for r in range(3000):  # past the columns' first growth
        q.ticks.add(room_id=f"room-{r}", timestamp_ms=20 * r, duration_ms=20,
                    levels=pb.LevelVector(levels=bytes([r % 128]) * (1 + r % 7)))
    ids, t, d, levels, counts = wire.steady_columns(q.SerializeToString())
    assert ids == [f"room-{r}" for r in range(3000)]
    assert t.tolist() == [20 * r for r in range(3000)] and set(d.tolist()) == {20}
    assert counts.tolist() == [1 + r % 7 for r in range(3000)]
    assert levels == b"".join(bytes([r % 128]) * (1 + r % 7) for r in range(3000))


def test_other_request_fields_are_skipped_and_ticks_keep_their_order():
    q = pb.StreamRequest(batch_id=2**40)
    q.ticks.add(room_id="a", timestamp_ms=20, levels=pb.LevelVector(levels=b"\x01"))
    q.ticks.add(room_id="b", timestamp_ms=20, config=pb.RoomConfig(profile="debate"),
                levels=pb.LevelVector(levels=b"\x02"))
    q.ticks.add(room_id="c", timestamp_ms=40, duration_ms=10,
                levels=pb.LevelVector(levels=b"\x03\x04"))
    raw = q.SerializeToString() + b"\x79" + b"\x00" * 8 + b"\x7d\x00\x00\x00\x00"  # unknown
    assert wire._wire.steady_ticks(raw) == [("a", 20, 0, b"\x01"), None,
                                            ("c", 40, 10, b"\x03\x04")]


@pytest.mark.parametrize("raw", [b"\x12", b"\x12\x05\x0a", b"\x12\x03\x0a\x09r",
                                 b"\x08", b"\x08\x80", b"\x0b", b"\x12\x02\x32\x05"])
def test_malformed_bytes_are_a_value_error(raw):
    with pytest.raises(ValueError):
        wire._wire.steady_ticks(raw)


def test_not_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        wire._wire.steady_ticks("text")


_ids = st.text(min_size=0, max_size=12)
_levels = st.binary(max_size=12)


@st.composite
def requests(draw) -> pb.StreamRequest:
    q = pb.StreamRequest(batch_id=draw(st.integers(0, 2**64 - 1)))
    for _ in range(draw(st.integers(0, 6))):
        t = q.ticks.add(room_id=draw(_ids),
                        timestamp_ms=draw(st.integers(-2**63, 2**63 - 1)),
                        duration_ms=draw(st.integers(0, 2**32 - 1)))
        if draw(st.booleans()):
            t.levels.levels = draw(_levels)
        if draw(st.integers(0, 4)) == 0:
            t.levels.roster.extend(draw(st.lists(_ids, max_size=3)))
        if draw(st.integers(0, 4)) == 0:
            t.events.add(participant_id=draw(_ids), type=ET.PARTICIPANT_EVENT_TYPE_PIN)
        if draw(st.integers(0, 5)) == 0:
            t.audio.add(participant_id=draw(_ids)).level.level = 30
        if draw(st.integers(0, 5)) == 0:
            t.config.hold_ms = draw(st.integers(0, 60000))
    return q


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_random_requests_read_as_protobuf_reads_them(q):
    columns_agree_with_ticks(q.SerializeToString())
    read = scan(q)
    assert len(read) == len(q.ticks)
    for tick, got in zip(q.ticks, read):
        only_levels = (not tick.events and not tick.audio and not tick.HasField("config")
                       and tick.HasField("levels") and not tick.levels.roster
                       and tick.room_id != "")
        if only_levels:
            assert got == (tick.room_id, tick.timestamp_ms, tick.duration_ms,
                           tick.levels.levels)
        else:
            assert got is None


def columns_agree_with_ticks(raw: bytes) -> None:
    """``steady_columns`` holds what ``steady_ticks`` reads, as columns."""
    try:
        read = wire._wire.steady_ticks(raw)
    except ValueError:
        with pytest.raises(ValueError):
            wire._wire.steady_columns(raw)
        return
    ids, t, d, levels, counts = wire.steady_columns(raw)
    assert ids == [None if r is None else r[0] for r in read]
    assert t.tolist() == [0 if r is None else r[1] for r in read]
    assert d.tolist() == [0 if r is None else r[2] for r in read]
    assert counts.tolist() == [0 if r is None else len(r[3]) for r in read]
    assert levels == b"".join(r[3] for r in read if r is not None)
    # given the last batch's room ids: the same columns, and that very list for the ids
    # exactly when every tick is steady and names its room
    for kept in (list(ids), list(ids)[:-1], list(ids) + ["x"], ["x"] + list(ids)[1:],
                 [None] * len(ids)):
        got = wire.steady_columns(raw, kept)
        assert got[0] == ids and got[3] == levels
        assert [c.tolist() for c in (got[1], got[2], got[4])] == [t.tolist(), d.tolist(),
                                                                   counts.tolist()]
        assert (got[0] is kept) == (None not in ids and kept == ids)


def agrees_with_protobuf(raw: bytes) -> None:
    """Where protobuf decodes ``raw``, every tick the scanner reads is protobuf's."""
    columns_agree_with_ticks(raw)
    try:
        q = pb.StreamRequest.FromString(raw)
    except Exception:  # noqa: BLE001 - the server refuses it before the scanner sees it
        return
    read = wire._wire.steady_ticks(raw)
    assert len(read) == len(q.ticks)
    for tick, got in zip(q.ticks, read):
        if got is not None:
            assert not (tick.events or tick.audio or tick.HasField("config")
                        or tick.levels.roster)
            assert got == (tick.room_id, tick.timestamp_ms, tick.duration_ms,
                           tick.levels.levels)


def test_client_bytes_in_any_valid_form_read_as_protobuf_reads_them():
    body = (b"\x32\x03\x12\x01\x05"          # levels first
            b"\x18\x94\x80\x00"                # duration 20 as an overlong varint
            b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # timestamp -1
            b"\x0a\x02ab")
    raw = b"\x12" + bytes([len(body)]) + body + b"\x08\x05"  # batch_id after the tick
    assert wire._wire.steady_ticks(raw) == [("ab", -1, 20, b"\x05")]
    agrees_with_protobuf(raw)
    wrong_type = b"\x12\x07\x0a\x01r\x32\x00\x08\x01"   # field 1 of LevelVector as varint
    assert wire._wire.steady_ticks(wrong_type) == [None]
    agrees_with_protobuf(wrong_type)


_tick_fields = st.sampled_from([
    b"\x0a\x01r", b"\x0a\x02r2", b"\x0a\x00",                   # room_id
    b"\x10\x14", b"\x10\x94\x80\x00", b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x18\x14", b"\x18\x0f", b"\x18\x80\x80\x80\x80\x20",          # duration_ms
    b"\x32\x03\x12\x01\x05", b"\x32\x00", b"\x32\x02\x12\x00",     # levels
    b"\x32\x06\x0a\x01a\x12\x01\x05", b"\x32\x02\x08\x01",         # roster; wrong type
    b"\x22\x00", b"\x2a\x00", b"\x3a\x00",                       # events, audio, config
    b"\x78\x01", b"\x0d\x00\x00\x00\x00", b"\x08\x01",            # unknown, wrong types
    b"\x80", b"\x12\x09",                                       # junk
])


@st.composite
def client_bytes(draw) -> bytes:
    """StreamRequests as any client might encode them: this schema's fields in any order,
    repeated, overlong, of the wrong wire type, and now and then junk."""
    raw = b""
    for _ in range(draw(st.integers(0, 4))):
        fields = draw(st.lists(_tick_fields, max_size=3))
        if draw(st.booleans()):  # a steady tick's fields, in any order, around those
            fields += [draw(st.sampled_from([b"\x0a\x01r", b"\x0a\x02r2"])),
                       draw(st.sampled_from([b"\x10\x14", b"\x10\x94\x80\x00", b""])),
                       draw(st.sampled_from([b"\x18\x14", b"\x18\x0a", b""])),
                       draw(st.sampled_from([b"\x32\x03\x12\x01\x05",
                                             b"\x32\x04\x12\x02\x05\x85"]))]
        body = b"".join(draw(st.permutations(fields)))
        raw += b"\x12" + _varint(len(body)) + body
        if draw(st.integers(0, 5)) == 0:
            raw += draw(st.sampled_from([b"\x08\x07", b"\x1a\x00", b"\x80"]))
    return raw


@settings(max_examples=3000, deadline=None)
@given(client_bytes())
def test_bytes_protobuf_accepts_are_read_as_protobuf_reads_them(raw):
    agrees_with_protobuf(raw)


@settings(max_examples=300, deadline=None)
@given(requests(), st.data())
def test_reordered_fields_of_valid_requests_read_as_protobuf_reads_them(q, data):
    """A valid request with each tick's fields in a drawn order (protobuf accepts any)."""
    raw = b""
    for tick in q.ticks:
        fields = []
        for f, _ in tick.ListFields():  # each field alone, serialized
            one = pb.RoomTick()
            one.MergeFrom(tick)
            for other, _ in tick.ListFields():
                if other.name != f.name:
                    one.ClearField(other.name)
            fields.append(one.SerializeToString())
        body = b"".join(data.draw(st.permutations(fields)))
        raw += b"\x12" + _varint(len(body)) + body
    agrees_with_protobuf(raw)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(raw):
    agrees_with_protobuf(raw)
    try:
        read = wire._wire.steady_ticks(raw)
    except ValueError:
        return
    assert isinstance(read, list)
    for t in read:
        assert t is None or (isinstance(t, tuple) and len(t) == 4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.integers(1, 4))
def test_a_batch_read_in_parts_is_the_batch_read_whole(q, part):
    raw = q.SerializeToString()
    read, offset = [], 0
    while True:
        got, offset = wire._wire.steady_ticks_part(raw, offset, part)
        assert len(got) <= part
        if not got:
            break
        read += got
    assert read == wire._wire.steady_ticks(raw) and offset == len(raw)


def test_reading_from_outside_the_bytes_is_a_value_error():
    raw = steady_tick(room_id="r", levels=pb.LevelVector(levels=b"a")).SerializeToString()
    for offset, n in ((-1, 1), (len(raw) + 1, 1), (0, 0)):
        with pytest.raises(ValueError):
            wire._wire.steady_ticks_part(raw, offset, n)


def test_the_last_batch_s_room_ids_come_back_as_they_are_when_the_rooms_are_the_same():
    q = pb.StreamRequest(batch_id=1)
    for r in ("salle-é", "room-2", "名前"):
        q.ticks.add(room_id=r, timestamp_ms=40, duration_ms=20,
                    levels=pb.LevelVector(levels=b"\x80\x7f"))
    raw = q.SerializeToString()
    first = wire.steady_columns(raw)[0]
    assert first == ["salle-é", "room-2", "名前"]
    assert wire.steady_columns(raw, first)[0] is first
    other = ["salle-é", "room-3", "名前"]
    assert wire.steady_columns(raw, other)[0] == first  # another room: a list of its own
    q.ticks[1].levels.roster.append("p")                 # a tick that is not steady
    ids = wire.steady_columns(q.SerializeToString(), first)[0]
    assert ids == ["salle-é", None, "名前"] and ids is not first


def test_an_unknown_group_field_is_skipped_as_protobuf_skips_it():
    # field 12 as a (deprecated) group, empty or holding a varint and a nested group:
    # protobuf decodes these requests, so the scanner must read them too (it refused them)
    tick = pb.StreamRequest(ticks=[pb.RoomTick(room_id="r", timestamp_ms=20, duration_ms=20,
                                               levels=pb.LevelVector(levels=b"\x19"))])
    for group in (b"cd", b"c\x08\x01d", b"c\x73\x74d"):
        raw = group + tick.SerializeToString() + group
        agrees_with_protobuf(raw)
        assert wire._wire.steady_ticks(raw) == [("r", 20, 20, b"\x19")]
