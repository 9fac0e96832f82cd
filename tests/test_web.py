"""The web viewer's HTTP API and event stream against a real server on loopback: the SSE
stream carries exactly the gRPC events (same sequences, same order), resumes from
Last-Event-ID, and is guarded by the same tokens, tenants, grants and room patterns."""
from __future__ import annotations

import asyncio
from http.client import HTTPConnection
import json
import threading

import pytest
from google.protobuf import json_format

from service.api import speakerswitch_pb2 as pb
from service.runtime.auth import create_token
from service.cli import build_parser
from service.client import Client
from service.runtime.config import ServiceConfig
from service.runtime.web import COOKIE, CSP, event_json

from conftest import ServerThread, script_levels, test_config

SECRET = b"web-test-secret-that-is-long-enough-for-hs256"
ABC = ["a", "b", "c"]
TURNS = [("a", 0, 1500), ("b", 2000, 3500), ("c", 4000, 5500)]


def http(server: ServerThread, method: str, path: str, body=None, headers=None,
         raw: bytes | None = None) -> tuple[int, dict, object]:
    """One request to the viewer; -> (status, headers, parsed JSON or text)."""
    conn = HTTPConnection("127.0.0.1", server.running.web.port, timeout=10)
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, dict(resp.getheaders()), (json.loads(text) if "json" in ctype else text)


class Sse:
    """An open event stream: ``next()`` -> (id, event JSON); comments and retry lines are
    skipped. The socket timeout only guards against a hung test."""

    def __init__(self, server: ServerThread, path: str, headers=None) -> None:
        self.conn = HTTPConnection("127.0.0.1", server.running.web.port, timeout=10)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self) -> tuple[int, dict]:
        """-> (the event's sequence from its SSE id, the event); the raw id in last_id."""
        event_id, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("stream ended")
            line = line.decode().rstrip("\n")
            if line == "":
                if data:
                    return event_id, json.loads("\n".join(data))
                continue
            field, _, value = line.partition(": ")
            if field == "id":
                self.last_id = value
                event_id = int(value.split("/")[0])
            elif field == "data":
                data.append(value)

    def take(self, n: int) -> list[tuple[int, dict]]:
        return [self.next() for _ in range(n)]

    def close(self) -> None:
        self.conn.close()


def publish(server: ServerThread, room: str, segments, ms: int, start_ms: int = 0,
            token: str | None = None, participants=ABC) -> list[pb.RoomEvent]:
    """Stream a scripted conversation through gRPC; -> the events it caused, in order."""
    ticks = script_levels(room, list(segments), list(participants), ms, start_ms=start_ms)
    with Client(server.target, token=token) as c:
        responses = list(c.stream([pb.StreamRequest(batch_id=1, ticks=ticks)]))
    assert not responses[0].rejections, responses[0].rejections
    return list(responses[0].events)


@pytest.fixture(scope="module")
def viewer():
    with ServerThread(test_config(http_port=0)) as s:
        yield s


# ----------------------------------------------------------------------------- stream

def test_stream_is_a_snapshot_then_exactly_the_grpc_events_in_sequence(viewer):
    first = publish(viewer, "order", TURNS[:1], 2000)
    sse = Sse(viewer, "/api/rooms/order/events")
    assert sse.status == 200
    assert sse.resp.getheader("Content-Type") == "text/event-stream"
    snap_id, snap = sse.next()
    assert snap["kind"] == "snapshot" and snap["sequence"] == 0
    assert snap_id == snap["snapshot"]["sequence"] == first[-1].sequence
    assert snap["snapshot"]["speaker_id"] == "a"
    later = publish(viewer, "order", [("b", 2000, 3500), ("c", 4000, 5500)], 4000,
                    start_ms=2000)
    got = sse.take(len(later))
    sse.close()
    assert [i for i, _ in got] == [e.sequence for e in later]
    assert [i for i, _ in got] == list(range(snap_id + 1, snap_id + 1 + len(later)))
    assert [e for _, e in got] == [event_json(e) for e in later]
    assert [(e["t_ms"], e["switch"]["speaker_id"], e["switch"]["reason"])
            for _, e in got if e["kind"] == "switch"] == \
        [(e.timestamp_ms, e.switch.speaker_id, "SWITCH_REASON_DOMINANT_SPEAKER")
         for e in later if e.HasField("switch")]
    # the proto3 JSON mapping (json_format): each event's message reads back as it was sent
    for (_, e), sent in zip(got, later):
        kind = sent.WhichOneof("event")
        assert json_format.ParseDict(e[kind], type(getattr(sent, kind))()) == getattr(sent, kind)


def test_last_event_id_resumes_with_no_gap_and_no_duplicate(viewer):
    publish(viewer, "resume", TURNS[:1], 2000)
    sse = Sse(viewer, "/api/rooms/resume/events")
    snap_id, _ = sse.next()
    before = publish(viewer, "resume", [("b", 2000, 3500)], 2000, start_ms=2000)
    seen = sse.take(3)
    sse.close()  # the browser drops here, having read up to seen[-1]
    last, last_id = seen[-1][0], sse.last_id
    assert last == snap_id + 3
    assert last_id == f"{last}/{viewer.running.web.boot}"
    after = publish(viewer, "resume", [("c", 4000, 5500)], 2000, start_ms=4000)
    missed = [e for e in before + after if e.sequence > last]
    again = Sse(viewer, "/api/rooms/resume/events", {"Last-Event-ID": last_id})
    got = again.take(len(missed))
    again.close()
    assert [e["kind"] for _, e in got].count("snapshot") == 0
    assert [i for i, _ in got] == [e.sequence for e in missed] == \
        list(range(last + 1, last + 1 + len(missed)))
    assert [e for _, e in got] == [event_json(e) for e in missed]


def test_after_query_resumes_like_last_event_id_and_the_header_wins(viewer):
    events = publish(viewer, "after-q", TURNS[:1], 2000)
    Sse(viewer, "/api/rooms/after-q/events").close()  # the room keeps history from now on
    more = publish(viewer, "after-q", [("b", 2000, 3500)], 2000, start_ms=2000)
    n = events[-1].sequence
    sse = Sse(viewer, f"/api/rooms/after-q/events?after={n}")
    assert sse.next()[0] == n + 1
    sse.close()
    sse = Sse(viewer, "/api/rooms/after-q/events?after=0",
              {"Last-Event-ID": str(more[2].sequence)})
    assert sse.next()[0] == more[3].sequence
    sse.close()


def test_a_resume_that_cannot_be_honoured_starts_over_from_a_snapshot(viewer):
    events = publish(viewer, "restarted", TURNS[:1], 2000)
    # a sequence from before a server restart (past the room's last), or one whose
    # events were never retained (the room was not watched then)
    for last_id in (10_000, 1):
        sse = Sse(viewer, "/api/rooms/restarted/events", {"Last-Event-ID": str(last_id)})
        event_id, e = sse.next()
        sse.close()
        assert e["kind"] == "snapshot" and event_id == events[-1].sequence


def test_an_id_from_another_server_process_starts_over_from_a_snapshot(viewer):
    events = publish(viewer, "reborn", TURNS[:1], 2000)
    Sse(viewer, "/api/rooms/reborn/events").close()  # history kept from here
    n = events[-1].sequence
    # the same sequence numbered by a server that has since restarted: not this room's
    sse = Sse(viewer, "/api/rooms/reborn/events", {"Last-Event-ID": f"{n - 2}/0bad0bad"})
    event_id, e = sse.next()
    sse.close()
    assert e["kind"] == "snapshot" and event_id == n


def test_a_dropped_room_tells_the_page_to_start_over():
    with ServerThread(test_config(http_port=0, idle_timeout_s=3600)) as s:
        publish(s, "gone", TURNS[:1], 2000)
        sse = Sse(s, "/api/rooms/gone/events")
        sse.next()
        s.call(lambda: s.running.registry.drop_room(("", "gone")))
        _, closed = sse.next()  # the room's last event says why it ended...
        assert closed["kind"] == "room_closed" and closed["room_closed"]["reason"] == "idle"
        assert sse.resp.readline() == b"event: reset\n"  # ...then the page starts over
        assert sse.resp.readline() == b"data: {}\n"
        sse.close()


def test_a_stream_may_wait_for_its_room(viewer):
    sse = Sse(viewer, "/api/rooms/later/events?wait=1")
    assert sse.status == 200  # the headers go out at once: the browser stays connected
    events = publish(viewer, "later", TURNS[:1], 2000)
    event_id, first = sse.next()
    assert first["kind"] == "snapshot"
    rest = [e for e in events if e.sequence > event_id]
    assert [i for i, _ in sse.take(len(rest))] == [e.sequence for e in rest]
    sse.close()


@pytest.mark.parametrize("path,headers,field", [
    ("/api/rooms/x/events", {"Last-Event-ID": "seven"}, "Last-Event-ID"),
    ("/api/rooms/x/events", {"Last-Event-ID": "-1"}, "Last-Event-ID"),
    ("/api/rooms/x/events?after=1e3", {}, "after"),
    ("/api/rooms/x/events?wait=yes", {}, "wait"),
    ("/api/rooms/" + "r" * 129 + "/events", {}, "room_id"),
])
def test_bad_stream_parameters_are_400_naming_the_field(viewer, path, headers, field):
    status, _, body = http(viewer, "GET", path, headers=headers)
    assert status == 400
    assert body["code"] == "INVALID_ARGUMENT" and body["field"] == field


def test_room_ids_with_any_character_work_percent_encoded(viewer):
    room = "team/alpha β"
    events = publish(viewer, room, TURNS[:1], 2000)
    path = "/api/rooms/team%2Falpha%20%CE%B2"
    status, _, state = http(viewer, "GET", path)
    assert (status, state["room_id"], state["sequence"]) == (200, room, events[-1].sequence)
    sse = Sse(viewer, path + "/events")
    assert sse.next()[1]["snapshot"]["room_id"] == room
    sse.close()
    status, _, body = http(viewer, "POST", path + "/events", {"participant": "b", "type": "PIN"})
    assert status == 200 and body["events"][0]["room_id"] == room
    assert http(viewer, "GET", "/rooms/team%2Falpha%20%CE%B2")[0] == 200


def test_unknown_room_is_404(viewer):
    for path in ("/api/rooms/nowhere/events", "/api/rooms/nowhere"):
        status, _, body = http(viewer, "GET", path)
        assert (status, body["code"], body["field"]) == (404, "NOT_FOUND", "room_id")
        assert body["message"] == "no room 'nowhere'"


def test_stopping_the_server_ends_open_streams(viewer):
    with ServerThread(test_config(http_port=0)) as s:
        publish(s, "bye", TURNS[:1], 2000)
        sse = Sse(s, "/api/rooms/bye/events")
        sse.next()
    with pytest.raises((EOFError, ConnectionError)):
        sse.next()
    sse.close()


# ----------------------------------------------------------------------------- state events

def test_a_pin_click_is_a_participant_event_and_its_decision_reaches_the_stream(viewer):
    publish(viewer, "pin", TURNS, 6000)
    sse = Sse(viewer, "/api/rooms/pin/events")
    snap_id, snap = sse.next()
    assert snap["snapshot"]["speaker_id"] == "c"
    status, _, body = http(viewer, "POST", "/api/rooms/pin/events",
                           {"participant": "a", "type": "PIN"})
    assert status == 200
    kinds = [(e["kind"], e["sequence"]) for e in body["events"]]
    assert kinds[0] == ("switch", snap_id + 1)
    sw = body["events"][0]["switch"]
    assert (sw["speaker_id"], sw["previous_speaker_id"], sw["reason"]) == ("a", "c", "SWITCH_REASON_PINNED")
    assert body["events"][0]["t_ms"] == 5980  # the room's media time: its last tick
    assert sse.take(len(body["events"])) == [(e["sequence"], e) for e in body["events"]]
    # the pin holds through the next turn; UNPIN goes straight to the current speaker
    later = publish(viewer, "pin", [("b", 6000, 8000)], 2500, start_ms=6000)
    assert not any(e.HasField("switch") for e in later)
    status, _, body = http(viewer, "POST", "/api/rooms/pin/events", {"type": "UNPIN"})
    assert status == 200
    assert [(e["switch"]["speaker_id"], e["switch"]["reason"])
            for e in body["events"] if e["kind"] == "switch"] == [("b", "SWITCH_REASON_UNPINNED")]
    sse.close()


def test_a_page_event_is_stepped_by_the_group_commit_like_a_stream_batch(viewer,
                                                                           monkeypatch):
    """Not by calling the registry directly: a drain of a big batch yields between its
    engine steps, and an event processed then would run between a room's ticks."""
    from service.runtime.group_commit import GroupCommit
    from service.runtime.rooms import RoomRegistry

    publish(viewer, "gc-order", TURNS, 6000)
    seen = []
    process = GroupCommit.process

    async def counting(self, batch):
        seen.append([t.room_id for t in batch.request.ticks])
        return await process(self, batch)

    def direct(*a, **k):
        raise AssertionError("RoomRegistry.process called directly while serving")

    monkeypatch.setattr(GroupCommit, "process", counting)
    monkeypatch.setattr(RoomRegistry, "process", direct)
    status, _, body = http(viewer, "POST", "/api/rooms/gc-order/events",
                           {"participant": "a", "type": "PIN"})
    assert status == 200, body
    assert seen == [["gc-order"]]
    assert [e["switch"]["reason"] for e in body["events"] if e["kind"] == "switch"] == ["SWITCH_REASON_PINNED"]


def test_a_page_event_takes_the_rooms_time_after_the_ticks_being_stepped(viewer,
                                                                         monkeypatch):
    """A click that arrives while the group commit steps a media server's (the RTP ingest's)
    ticks is processed after them at the room's new time; read before them, its tick would
    be refused as going back in time (a pin that did not take in the Janus test)."""
    from service.runtime.group_commit import GroupCommit

    publish(viewer, "busy", TURNS, 6000)
    held, release, reached = threading.Event(), threading.Event(), threading.Event()
    sliced, process, quiet = GroupCommit._sliced, GroupCommit.process, GroupCommit.quiet

    async def gated(self, pending):  # the next ticks, held in the middle of their drain
        if any(t.timestamp_ms >= 6000 and not t.events
               for b, _ in pending for t in b.request.ticks):
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
        return await sliced(self, pending)

    async def noting_process(self, batch):  # the click reached the group commit ...
        if any(t.events for t in batch.request.ticks):
            reached.set()
        return await process(self, batch)

    async def noting_quiet(self):  # ... or waits for it to be quiet
        reached.set()
        return await quiet(self)

    monkeypatch.setattr(GroupCommit, "_sliced", gated)
    monkeypatch.setattr(GroupCommit, "process", noting_process)
    monkeypatch.setattr(GroupCommit, "quiet", noting_quiet)
    later = threading.Thread(target=publish, args=(viewer, "busy", [("b", 6000, 6400)], 400),
                             kwargs={"start_ms": 6000})
    later.start()
    assert held.wait(10)
    answer = []
    click = threading.Thread(target=lambda: answer.append(http(
        viewer, "POST", "/api/rooms/busy/events", {"participant": "a", "type": "PIN"})))
    click.start()
    assert reached.wait(10)
    release.set()
    later.join(10)
    click.join(10)
    status, _, body = answer[0]
    assert status == 200, body
    assert [(e["t_ms"], e["switch"]["reason"]) for e in body["events"]
            if e["kind"] == "switch"] == [(6380, "SWITCH_REASON_PINNED")]


def test_camera_off_of_the_shown_speaker_moves_the_feed_at_once(viewer):
    publish(viewer, "cam", TURNS[:2], 4000)
    status, _, body = http(viewer, "POST", "/api/rooms/cam/events",
                           {"participant": "b", "type": "VIDEO_OFF"})
    assert status == 200
    switches = [e["switch"] for e in body["events"] if e["kind"] == "switch"]
    assert [(s["speaker_id"], s["reason"]) for s in switches] == [("a", "SWITCH_REASON_VIDEO_OFF")]
    status, _, state = http(viewer, "GET", "/api/rooms/cam")
    assert status == 200
    assert {p["participant_id"]: p["video"] for p in state["participants"]} == \
        {"a": True, "b": False, "c": True}
    assert state["speaker_id"] == "a"


@pytest.mark.parametrize("body,raw,ctype,status,field", [
    (None, b"{not json", "application/json", 400, "body"),
    (None, b"[1, 2]", "application/json", 400, "body"),
    (None, b'{"participant": "a", "type": "PIN"}', "text/plain", 400, "Content-Type"),
    ({"participant": "a", "type": "DANCE"}, None, None, 400, "type"),
    ({"participant": "a", "type": "LEAVE"}, None, None, 400, "type"),
    ({"participant": "a"}, None, None, 400, "type"),
    ({"type": "PIN"}, None, None, 400, "participant"),
    ({"participant": 7, "type": "PIN"}, None, None, 400, "participant"),
    ({"participant": "a", "type": "PIN", "force": True}, None, None, 400, "force"),
    ({"participant": "zed", "type": "PIN"}, None, None, 404, "participant"),
])
def test_bad_state_events_are_refused_naming_the_field(bad_events_room, body, raw, ctype,
                                                      status, field):
    viewer = bad_events_room
    before = viewer.call(lambda: viewer.running.registry.room("bad-events").sequence)
    headers = {"Content-Type": ctype} if ctype else None
    got, _, err = http(viewer, "POST", "/api/rooms/bad-events/events", body, headers, raw)
    assert (got, err["field"]) == (status, field), err
    assert err["message"]
    assert viewer.call(lambda: viewer.running.registry.room("bad-events").sequence) == before


@pytest.fixture(scope="module")
def bad_events_room(viewer):
    publish(viewer, "bad-events", TURNS[:1], 2000)
    return viewer


def test_a_state_event_for_an_unknown_room_is_404_and_creates_nothing(viewer):
    status, _, err = http(viewer, "POST", "/api/rooms/ghost/events",
                          {"participant": "a", "type": "PIN"})
    assert (status, err["field"]) == (404, "room_id")
    assert not _room_exists(viewer, "ghost")


def _room_exists(server: ServerThread, room: str) -> bool:
    return server.call(lambda: server.running.registry.room(room) is not None)


# ----------------------------------------------------------------------------- rooms list

def test_rooms_list_counts_participants_speaker_and_switches_per_minute():
    with ServerThread(test_config(http_port=0)) as s:
        publish(s, "busy", TURNS[:1], 2000)
        publish(s, "quiet", [("a", 0, 1500)], 2000, participants=["a", "b"])
        status, _, listing = http(s, "GET", "/api/rooms")
        assert status == 200 and listing["total"] == 2
        rows = {r["room_id"]: r for r in listing["rooms"]}
        assert [r["room_id"] for r in listing["rooms"]] == ["busy", "quiet"]
        assert (rows["busy"]["participants"], rows["busy"]["speaker_id"]) == (3, "a")
        assert (rows["quiet"]["participants"], rows["quiet"]["speaker_id"]) == (2, "a")
        assert rows["busy"]["switches_per_min"] is None  # followed for too short a time
        # listing starts following the room: 20 s of media with a turn change every 5 s
        turns = [(p, 2000 + 5000 * k, 2000 + 5000 * k + 3000)
                 for k, p in enumerate(["b", "c", "a", "b"])]
        events = publish(s, "busy", turns, 20000, start_ms=2000)
        n = sum(e.HasField("switch") for e in events)
        assert n == 4
        _, _, listing = http(s, "GET", "/api/rooms")
        busy = listing["rooms"][0]
        assert busy["t_ms"] == 22000
        assert busy["switches_per_min"] == round(n * 60000 / 20000, 1)


def test_static_pages_are_served_with_a_self_only_content_security_policy(viewer):
    for path, kind in (("/", "text/html"), ("/rooms/any%20room", "text/html"),
                       ("/static/room.js", "javascript"), ("/static/style.css", "text/css"),
                       ("/static/favicon.svg", "image/svg+xml")):
        status, headers, _ = http(viewer, "GET", path)
        assert status == 200, path
        assert kind in headers["Content-Type"], (path, headers["Content-Type"])
        assert headers["Content-Security-Policy"] == CSP
    status, _, body = http(viewer, "GET", "/api/demo")
    assert (status, body) == (200, {"demo": False})
    assert http(viewer, "GET", "/demo/audio")[0] == 404


# ----------------------------------------------------------------------------- auth

def token(tenant="acme", grants=("publish", "watch"), rooms=None, ttl=600):
    return create_token(SECRET, tenant, list(grants), ttl, rooms)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    key = tmp_path_factory.mktemp("web-keys") / "secret"
    key.write_bytes(SECRET)
    with ServerThread(test_config(http_port=0, insecure_no_auth=False,
                                  jwt_secret_file=str(key))) as s:
        publish(s, "studio-1", TURNS[:1], 2000, token=token("acme"))
        publish(s, "lobby", TURNS[:1], 2000, token=token("acme"))
        publish(s, "studio-1", TURNS[:1], 2000, token=token("globex"))
        yield s


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/rooms", None), ("GET", "/api/rooms/studio-1", None),
    ("GET", "/api/rooms/studio-1/events", None), ("GET", "/api/session", None),
    ("POST", "/api/rooms/studio-1/events", {"participant": "a", "type": "PIN"}),
])
def test_without_a_valid_token_every_api_call_is_401(secure, method, path, body):
    for headers in ({}, bearer("not.a.jwt"), bearer(token(ttl=-120)),
                    {"Authorization": "Basic abc"}, {"Cookie": f"{COOKIE}=garbage"}):
        status, hdrs, err = http(secure, method, path, body, headers)
        assert (status, err["code"], err["field"]) == (401, "UNAUTHENTICATED", "authorization")
        assert hdrs["WWW-Authenticate"].startswith("Bearer")


def test_a_token_reaches_only_its_tenants_rooms(secure):
    acme, globex = bearer(token("acme")), bearer(token("globex"))
    _, _, listing = http(secure, "GET", "/api/rooms", headers=acme)
    assert [r["room_id"] for r in listing["rooms"]] == ["lobby", "studio-1"]
    _, _, listing = http(secure, "GET", "/api/rooms", headers=globex)
    assert [r["room_id"] for r in listing["rooms"]] == ["studio-1"]
    for method, path, body in (("GET", "/api/rooms/lobby", None),
                               ("GET", "/api/rooms/lobby/events", None),
                               ("POST", "/api/rooms/lobby/events",
                                {"participant": "a", "type": "PIN"})):
        status, _, err = http(secure, method, path, body, globex)
        assert (status, err["code"], err["field"]) == (404, "NOT_FOUND", "room_id")
    sse = Sse(secure, "/api/rooms/studio-1/events", acme)
    _, snap = sse.next()
    sse.close()
    assert snap["snapshot"]["room_id"] == "studio-1"


def test_grants_and_room_patterns_are_enforced(secure):
    watcher = bearer(token(grants=("watch",)))
    publisher = bearer(token(grants=("publish",)))
    studio = bearer(token(rooms="studio-*"))
    status, _, err = http(secure, "POST", "/api/rooms/studio-1/events",
                          {"participant": "a", "type": "PIN"}, watcher)
    assert (status, err["code"]) == (403, "PERMISSION_DENIED")
    assert "'publish' grant" in err["message"]
    for path in ("/api/rooms", "/api/rooms/studio-1/events"):
        status, _, err = http(secure, "GET", path, headers=publisher)
        assert (status, err["code"]) == (403, "PERMISSION_DENIED")
    status, _, err = http(secure, "GET", "/api/rooms/lobby/events", headers=studio)
    assert (status, err["field"]) == (403, "room_id")
    _, _, listing = http(secure, "GET", "/api/rooms", headers=studio)
    assert [r["room_id"] for r in listing["rooms"]] == ["studio-1"]


def test_a_session_cookie_authenticates_like_the_header(secure):
    tok = token("acme", grants=("watch",))
    status, hdrs, who = http(secure, "POST", "/api/session", {"token": tok})
    assert status == 200
    assert who == {"tenant": "acme", "grants": ["watch"], "rooms": None, "auth": True,
                   "expires_s": who["expires_s"]}
    cookie = hdrs["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={tok};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    sse = Sse(secure, "/api/rooms/studio-1/events", {"Cookie": f"{COOKIE}={tok}"})
    assert sse.next()[1]["kind"] == "snapshot"
    sse.close()
    status, _, err = http(secure, "POST", "/api/session", {"token": token(ttl=-120)})
    assert (status, err["field"]) == (401, "token")
    status, _, err = http(secure, "POST", "/api/session", {"token": ""})
    assert (status, err["field"]) == (400, "token")


# ----------------------------------------------------------------------------- config

def test_http_port_is_off_by_default_and_validated():
    assert ServiceConfig().http_port == -1
    with pytest.raises(ValueError, match="http_port"):
        ServiceConfig(http_port=70000, insecure_no_auth=True).validate()
    a = build_parser().parse_args(["serve", "--http-port", "8080", "--http-host", "0.0.0.0"])
    assert (a.http_port, a.http_host) == (8080, "0.0.0.0")


def test_no_viewer_without_http_port():
    with ServerThread(test_config()) as s:
        assert s.running.web is None
