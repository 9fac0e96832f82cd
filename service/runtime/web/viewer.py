"""The web viewer: a live room page and a rooms list, served next to gRPC with a small
HTTP API (``serve --http-port``).

It runs on the gRPC server's event loop (aiohttp), so it reads the registry and the feed
without locks, and a page's camera or pin click goes through the group commit
(service/runtime/group_commit.py) like a media server's event. Live updates are Server-Sent Events fed by the same ``RoomFeed``
as gRPC ``Watch``: each SSE ``id:`` is the room's event sequence (a snapshot's is the last
sequence it includes), so a browser reconnecting with ``Last-Event-ID`` resumes with no gap
and no duplicate. Authentication is the gRPC one (same tokens, tenants, grants and room
patterns): a bearer token in an ``Authorization`` header or, for ``EventSource`` which
cannot set headers, in a cookie set by ``POST /api/session``.

API (JSON; errors are ``{"code", "field", "message"}`` with a 4xx status):
  GET    /api/session                   who the caller is (tenant, grants, rooms)
  POST   /api/session  {"token"}        check a token and keep it in an HttpOnly cookie
  DELETE /api/session                   forget the cookie
  GET    /api/rooms                     the tenant's rooms: participants, speaker, switches/min
  GET    /api/rooms/{room}              the room's state (as gRPC GetRoom)
  GET    /api/rooms/{room}/events       SSE: snapshot then live events (?wait=1, ?after=N,
                                        Last-Event-ID)
  POST   /api/rooms/{room}/events  {"participant", "type"}   a participant state event
  GET    /api/demo                      the demo conversation's clock (speakerswitch demo)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pathlib
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from aiohttp import web
from google.protobuf import json_format

from ...api import speakerswitch_pb2 as pb
from ..auth import INSECURE, Authenticator, AuthError, Principal, clip
from ..config import ServiceConfig, is_loopback
from ..feed import FeedError, RoomFeed, WatchSlots, subscribe
from ..group_commit import GroupCommit
from ..metrics import LogLimiter, Metrics
from ..rooms import Batch, RoomRegistry, TickError, check_id


class Serving(Protocol):
    """What the viewer uses of the running gRPC server (service.runtime.server.RunningServer), so
    that this module does not import the server that starts it."""
    registry: RoomRegistry
    feed: RoomFeed
    metrics: Metrics
    watch_slots: WatchSlots | None
    group_commit: GroupCommit | None

log = logging.getLogger("speakerswitch.web")

STATIC = pathlib.Path(__file__).parent / "static"
COOKIE = "speakerswitch_token"
KEEPALIVE_S = 15.0
"""An SSE comment this often keeps proxies from closing a quiet stream and shows the
server a browser that went away (the write fails)."""
RETRY_MS = 1000
"""How long a browser waits before reconnecting a dropped event stream."""
RATE_WINDOW_MS = 60_000
RATE_MIN_SPAN_MS = 10_000
"""Switches per minute are counted over the last minute of media time, once a room has
been followed for at least this long (a rate from two seconds is noise)."""
MAX_RATE_ROOMS = 100
"""Rooms whose switch rate is followed at once: each is a feed subscription, which makes
the room keep its event history; the rooms list shows no rate beyond these."""
RATE_IDLE_S = 120.0
"""A room's rate stops being followed when no rooms list has asked for it this long."""
MAX_LISTED_ROOMS = 1000
CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
"""The page loads nothing from elsewhere (it works offline): the browser enforces it."""

PAGE_EVENTS = ("VIDEO_ON", "VIDEO_OFF", "AUDIO_MUTED", "AUDIO_UNMUTED", "PIN", "UNPIN",
               "SCREEN_SHARE_ON", "SCREEN_SHARE_OFF")
"""Participant events the page may send: state toggles. Joining and leaving stay with the
media server, which knows who is connected."""
HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
               grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
               grpc.StatusCode.UNAVAILABLE: 503}
_CODES = {c.value[0]: c for c in grpc.StatusCode}


class ApiError(Exception):
    """A refused request: gRPC status (mapped to HTTP), the offending field, the reason."""

    def __init__(self, code: grpc.StatusCode, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code, self.field, self.message = code, field, message

    def response(self) -> web.Response:
        resp = web.json_response({"code": self.code.name, "field": self.field,
                                  "message": self.message},
                                 status=HTTP_STATUS.get(self.code, 500))
        if self.code == grpc.StatusCode.UNAUTHENTICATED:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="speakerswitch"'
        return resp


# ----------------------------------------------------------------------------- JSON

def message_json(msg: Any) -> dict:
    """A protobuf message in the proto3 JSON mapping (google.protobuf.json_format, which
    also knows maps, well-known types and oneofs as the .proto grows): field names as in
    the .proto, enums by their full value name (``SWITCH_REASON_PINNED``), every field
    without presence printed (false, 0, "" and [] included, so the page needs no defaults;
    an unset message or ``optional`` field is left out), 64-bit integers as numbers (media
    times fit a double). ``json_format.ParseDict`` reads it back into the message."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True,
                                     unquote_int64_if_possible=True)


def event_json(e: pb.RoomEvent) -> dict:
    """``{"room_id", "sequence", "t_ms", "kind", <kind>: {...}}``; the snapshot's sequence
    is the last one it includes, as the SSE id says."""
    kind = e.WhichOneof("event")
    out: dict[str, Any] = {"room_id": e.room_id, "sequence": e.sequence,
                           "t_ms": e.timestamp_ms, "kind": kind}
    if kind is not None:
        out[kind] = message_json(getattr(e, kind))
    return out


def sse_id(e: pb.RoomEvent, boot: str) -> str:
    """``<sequence>/<boot>``: the room's sequence (a snapshot's is the last it includes),
    and this server process's boot id. A room that starts over in a restarted server
    numbers its events from 1 again, so a sequence alone could resume a browser into the
    wrong room's history; the boot id tells it apart."""
    return f"{e.snapshot.sequence if e.HasField('snapshot') else e.sequence}/{boot}"


def sse_message(e: pb.RoomEvent, boot: str) -> bytes:
    data = json.dumps(event_json(e), separators=(",", ":"))
    return f"id: {sse_id(e, boot)}\ndata: {data}\n\n".encode()


RESET = b"event: reset\ndata: {}\n\n"
"""Sent when a room's feed ends because the room was dropped: its next incarnation will
number events from 1 again, so the page must start over from a snapshot."""
TOKEN_EXPIRED = "token expired: reconnect with a new one"
WRITE_GRACE_S = 1.0
"""An event stream that must end (token expired, fell behind) while a write to its browser
is pending is cut if the write has not finished this much later."""


def error_event(code: grpc.StatusCode, message: str) -> bytes:
    """Sent before an event stream ends early (its token expired, it fell behind): the
    gRPC status a Watch would have ended with. The browser then reconnects, and resumes or
    is asked to sign in again."""
    data = json.dumps({"code": code.name, "message": message}, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()


@dataclass
class _End:
    """Queued to an event stream's writer: end with this error event."""
    code: grpc.StatusCode
    message: str


@dataclass
class _EventStream:
    """One open event stream: its writer task and what the writer waits on."""
    task: asyncio.Task
    queue: asyncio.Queue
    writing: bool = False
    ending: bool = False

    def end(self, code: grpc.StatusCode, message: str) -> None:
        """End the stream with an error event; a writer still stuck writing to a browser
        that does not read WRITE_GRACE_S later is cut instead (callable from a timer or the
        feed: it only schedules)."""
        if self.ending:
            return
        self.ending = True
        self.queue.put_nowait(_End(code, message))
        if self.writing:
            asyncio.get_running_loop().call_later(WRITE_GRACE_S, self._cut)

    def _cut(self) -> None:
        if self.writing:
            self.task.cancel()
_EVENT_ID = re.compile(r"(\d{1,19})(?:/([0-9a-f]{1,32}))?")


def _principal_json(p: Principal, auth: bool) -> dict:
    return {"tenant": p.tenant, "grants": sorted(p.grants), "rooms": p.rooms,
            "expires_s": p.expires_s, "auth": auth}


# ----------------------------------------------------------------------------- rates

@dataclass
class _Rate:
    start_ms: int | None = None
    switches: deque[int] = field(default_factory=deque)
    asked_s: float = 0.0
    task: asyncio.Task | None = None

    def per_minute(self, now_ms: int) -> float | None:
        if self.start_ms is None:
            return None
        span = min(RATE_WINDOW_MS, now_ms - self.start_ms)
        if span < RATE_MIN_SPAN_MS:
            return None
        n = sum(1 for t in self.switches if t > now_ms - span)
        return round(n * 60_000 / span, 1)


class SwitchRates:
    """Switches per minute of the rooms a rooms list shows, counted from each room's feed
    from the first time it is listed (the registry keeps no per-room history of its own)."""

    def __init__(self, feed_of: Callable[[], Any]) -> None:
        self.feed_of = feed_of
        self.rooms: dict[tuple[str, str], _Rate] = {}

    def per_minute(self, tenant: str, room_id: str, now_ms: int) -> float | None:
        now_s = time.monotonic()
        for key, r in list(self.rooms.items()):
            if now_s - r.asked_s > RATE_IDLE_S and r.task is not None:
                r.task.cancel()
                del self.rooms[key]
        key = (tenant, room_id)
        rate = self.rooms.get(key)
        if rate is None:
            if len(self.rooms) >= MAX_RATE_ROOMS:
                return None
            rate = self.rooms[key] = _Rate()
            rate.task = asyncio.create_task(self._follow(key, rate))
        rate.asked_s = now_s
        return rate.per_minute(now_ms)

    async def _follow(self, key: tuple[str, str], rate: _Rate) -> None:
        try:
            async with contextlib.aclosing(self.feed_of().events(*key)) as events:
                async for e in events:
                    if e.HasField("snapshot"):
                        rate.start_ms = e.timestamp_ms
                    elif e.HasField("switch"):
                        rate.switches.append(e.timestamp_ms)
                        while rate.switches and rate.switches[0] <= e.timestamp_ms - RATE_WINDOW_MS:
                            rate.switches.popleft()
        except FeedError:
            pass  # the room is gone, or we fell behind: the next listing starts over
        finally:
            if self.rooms.get(key) is rate:
                del self.rooms[key]

    def close(self) -> None:
        for r in self.rooms.values():
            if r.task is not None:
                r.task.cancel()
        self.rooms.clear()


# ----------------------------------------------------------------------------- demo

@dataclass
class DemoInfo:
    """What ``speakerswitch demo`` tells the page so it can play the conversation's audio
    in step with the room: ``position_ms()`` is where the streamed conversation is now."""
    room_id: str
    audio: pathlib.Path
    duration_ms: int
    position_ms: Callable[[], int | None]
    script: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"demo": True, "room_id": self.room_id, "audio_url": "/demo/audio",
                "duration_ms": self.duration_ms, "position_ms": self.position_ms(),
                "script": self.script}


# ----------------------------------------------------------------------------- the app

class WebViewer:
    """The aiohttp application and its listening site, on the server's event loop."""

    def __init__(self, running: Serving, config: ServiceConfig,
                 authenticator: Authenticator | None) -> None:
        self.running = running
        self.config = config
        self.authenticator = authenticator
        self.demo: DemoInfo | None = None
        self.rates = SwitchRates(lambda: self.running.feed)
        self.port = 0
        self.scheme = "http"
        self.boot = secrets.token_hex(4)
        self._streams: dict[asyncio.Task, asyncio.Queue] = {}
        self._runner: web.AppRunner | None = None
        self._log = LogLimiter()
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        app.on_response_prepare.append(self._headers)
        r = app.router
        r.add_get("/", self._page("rooms.html"))
        # room ids may hold any character, "/" included (sent as %2F)
        r.add_get("/rooms/{room_id:.+}", self._page("room.html"))
        r.add_static("/static/", STATIC)
        r.add_get("/api/session", self.get_session)
        r.add_post("/api/session", self.post_session)
        r.add_delete("/api/session", self.delete_session)
        r.add_get("/api/rooms", self.list_rooms)
        r.add_get("/api/rooms/{room_id:.+}/events", self.room_events)
        r.add_post("/api/rooms/{room_id:.+}/events", self.post_event)
        r.add_get("/api/rooms/{room_id:.+}", self.get_room)
        r.add_get("/api/demo", self.get_demo)
        r.add_get("/demo/audio", self.demo_audio)
        self.app = app

    # --------------------------------------------------------------- lifecycle
    def ssl_context(self) -> ssl.SSLContext | None:
        """The gRPC port's TLS (certificate, and client CA for mutual TLS), if it has any.
        Without TLS, a bind beyond loopback is refused unless insecure_http says a proxy
        terminates TLS (or there are no tokens to protect: insecure_no_auth)."""
        cfg = self.config
        if not cfg.tls_cert_file:
            if not (is_loopback(cfg.http_host) or cfg.insecure_http or cfg.insecure_no_auth):
                raise ValueError(f"http_host: {cfg.http_host!r} is not a loopback address, "
                                 "and the web viewer would carry tokens over plain HTTP: set "
                                 "tls_cert_file/tls_key_file, or insecure_http behind a proxy "
                                 "that terminates TLS")
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
        if cfg.tls_client_ca_file:
            ctx.load_verify_locations(cfg.tls_client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self, host: str, port: int) -> None:
        ssl_context = self.ssl_context()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.scheme = "http" if ssl_context is None else "https"
        log.info("web viewer on %s://%s:%d/", self.scheme, host, self.port)

    async def stop(self) -> None:
        """End the event streams first, cleanly (a browser sees the stream end and
        reconnects; a cut one is a network error in its console), then the server."""
        self.rates.close()
        for queue in self._streams.values():
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
        for task in list(self._streams):  # any that did not finish in shutdown_timeout
            task.cancel()

    # --------------------------------------------------------------- plumbing
    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            if e.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                self._log.warning(log, f"denied {e.code.name}",
                                  "denied an HTTP request from %s: %s (%s)", request.remote,
                                  e.message, e.code.name)
            if self.running.metrics is not None:
                self.running.metrics.errors.labels(e.code.name).inc()
            return e.response()

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")

    @staticmethod
    def _page(name: str):
        async def handler(request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})
        return handler

    def principal(self, request: web.Request, grant: str | None) -> Principal:
        """The caller, as gRPC would see it: the token from the Authorization header, else
        from the cookie; ``grant`` required when given."""
        if self.authenticator is None:
            p = INSECURE
        else:
            header = request.headers.get("Authorization")
            cookie = request.cookies.get(COOKIE)
            metadata = ([("authorization", header)] if header is not None
                        else [("authorization", f"Bearer {cookie}")] if cookie else [])
            try:
                p = self.authenticator.authenticate(metadata)
            except AuthError as e:
                raise ApiError(e.code, "authorization", e.message) from None
        if grant is not None:
            try:
                p.require(grant)
            except AuthError as e:
                raise ApiError(e.code, "authorization", e.message) from None
        return p

    @staticmethod
    def room_id(request: web.Request, principal: Principal) -> str:
        room_id = request.match_info["room_id"]
        try:
            check_id(room_id, "room_id")  # 1..128 bytes, as in gRPC
        except TickError as e:
            raise ApiError(e.code, e.field, e.message) from None
        if not principal.room_allowed(room_id):
            raise ApiError(grpc.StatusCode.PERMISSION_DENIED, "room_id",
                           f"{clip(room_id)} is outside the token's rooms")
        return room_id

    @staticmethod
    async def json_body(request: web.Request) -> dict:
        """The request's JSON object. Only ``application/json`` is read: a cross-site form
        cannot send it without the browser asking first, which is our CSRF guard beside
        the SameSite cookie."""
        if request.content_type != "application/json":
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Type",
                           f"must be application/json, got {clip(request.content_type)}")
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "body",
                           f"not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "body",
                           f"must be a JSON object, got {type(body).__name__}")
        return body

    # --------------------------------------------------------------- session
    async def get_session(self, request: web.Request) -> web.Response:
        return web.json_response(_principal_json(self.principal(request, None),
                                                 self.authenticator is not None))

    async def post_session(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "token",
                           "must be a non-empty string")
        token = token.strip()
        if self.authenticator is None:
            return web.json_response(_principal_json(INSECURE, False))
        try:
            p = self.authenticator.authenticate([("authorization", f"Bearer {token}")])
        except AuthError as e:
            raise ApiError(e.code, "token", e.message) from None
        resp = web.json_response(_principal_json(p, True))
        max_age = None if p.expires_s is None else max(0, int(p.expires_s - time.time()))
        resp.set_cookie(COOKIE, token, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=request.secure)
        return resp

    async def delete_session(self, request: web.Request) -> web.Response:
        resp = web.json_response({})
        resp.del_cookie(COOKIE, path="/")
        return resp

    # --------------------------------------------------------------- rooms
    async def list_rooms(self, request: web.Request) -> web.Response:
        p = self.principal(request, "watch")
        registry = self.running.registry
        ids = sorted(rid for tenant, rid in registry.rooms
                     if tenant == p.tenant and p.room_allowed(rid))
        rooms = []
        for rid in ids[:MAX_LISTED_ROOMS]:
            st = registry.room_state(rid, p.tenant)
            if st is None:
                continue
            rooms.append({"room_id": rid, "participants": len(st.participants),
                          "speaker_id": st.speaker_id, "audio_speaker_id": st.audio_speaker_id,
                          "t_ms": st.timestamp_ms,
                          "switches_per_min": self.rates.per_minute(p.tenant, rid,
                                                                    st.timestamp_ms)})
        return web.json_response({"rooms": rooms, "total": len(ids)})

    async def get_room(self, request: web.Request) -> web.Response:
        p = self.principal(request, "watch")
        room_id = self.room_id(request, p)
        st = self.running.registry.room_state(room_id, p.tenant)
        if st is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, "room_id", f"no room {clip(room_id)}")
        return web.json_response(message_json(st))

    # --------------------------------------------------------------- event stream
    def _after(self, request: web.Request) -> int | None:
        """Where to resume: the browser's ``Last-Event-ID`` (set when it reconnects), else
        ``?after=``, each an event id (``<sequence>[/<boot>]``); None for a snapshot first,
        also when the id comes from another server process (see ``sse_id``)."""
        for name, text in (("Last-Event-ID", request.headers.get("Last-Event-ID")),
                           ("after", request.query.get("after"))):
            if text is None or text == "":
                continue
            m = _EVENT_ID.fullmatch(text)
            if m is None:
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, name,
                               f"must be an event id (a sequence number, 0 or more, "
                               f"optionally /<boot id>), got {clip(text)}")
            if m.group(2) is not None and m.group(2) != self.boot:
                return None  # numbered by another server process: start over
            return int(m.group(1))
        return None

    @staticmethod
    def _flag(request: web.Request, name: str) -> bool:
        text = request.query.get(name, "0")
        if text not in ("0", "1", "true", "false"):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, name,
                           f"must be 0, 1, true or false, got {clip(text)}")
        return text in ("1", "true")

    async def _subscription(self, tenant: str, room_id: str, after: int | None,
                            wait: bool, on_drop: Callable[[FeedError], None] | None = None
                            ) -> AsyncIterator[pb.RoomEvent]:
        """The room's feed from ``after``; when the events after it are gone (too old, or
        the room is a new one since the server restarted), from a snapshot instead: the
        page then starts over, which is always correct."""
        feed = self.running.feed
        if after is not None:
            try:
                async with contextlib.aclosing(subscribe(
                        feed, tenant, room_id, after_sequence=after, wait_for_room=wait,
                        on_drop=on_drop)) as events:
                    async for e in events:
                        yield e
                return
            except FeedError as e:
                if e.code != grpc.StatusCode.OUT_OF_RANGE:
                    raise
                log.info("room %s: cannot resume after %d (%s); sending a snapshot",
                         clip(room_id), after, e.message)
        async with contextlib.aclosing(subscribe(feed, tenant, room_id, wait_for_room=wait,
                                                 on_drop=on_drop)) as events:
            async for e in events:
                yield e

    async def room_events(self, request: web.Request) -> web.StreamResponse:
        p = self.principal(request, "watch")
        room_id = self.room_id(request, p)
        after = self._after(request)
        wait = self._flag(request, "wait")
        slots = self.running.watch_slots
        if slots is not None:
            try:
                slots.take(p.tenant)  # max_watchers_per_tenant, shared with gRPC Watch
            except FeedError as e:
                raise ApiError(e.code, "tenant", e.message) from None
        try:
            return await self._event_stream(request, p, room_id, after, wait)
        finally:
            if slots is not None:
                slots.release(p.tenant)

    async def _event_stream(self, request: web.Request, p: Principal, room_id: str,
                            after: int | None, wait: bool) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        # the pump hands the writer one event at a time: a backlog stays in the feed, where
        # it is counted against the tenant's budget and dropped when over it
        queue: asyncio.Queue[pb.RoomEvent | _End | None] = asyncio.Queue()
        stream = _EventStream(task, queue)
        events = self._subscription(p.tenant, room_id, after, wait,
                                    on_drop=lambda e: stream.end(e.code, e.message))
        first: pb.RoomEvent | None = None
        if not wait:  # an unknown room is a 404 before the stream starts
            try:
                first = await anext(events)
            except FeedError as e:
                await events.aclose()
                raise ApiError(e.code, "room_id", e.message.removeprefix("room_id: ")) from None
            except StopAsyncIteration:
                raise ApiError(grpc.StatusCode.NOT_FOUND, "room_id",
                               f"room {clip(room_id)} was just dropped") from None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        self._streams[task] = queue
        loop = asyncio.get_running_loop()
        expiry = (None if p.ends_s is None else loop.call_later(
            max(0.0, p.ends_s - time.time()), stream.end, grpc.StatusCode.UNAUTHENTICATED,
            TOKEN_EXPIRED))
        pump = asyncio.create_task(self._pump(events, first, queue, room_id))

        async def write(data: bytes) -> None:
            stream.writing = True
            await resp.write(data)
            stream.writing = False

        try:
            await resp.prepare(request)
            await write(f"retry: {RETRY_MS}\n\n".encode())
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        item = await queue.get()
                except TimeoutError:
                    await write(b": keepalive\n\n")
                    continue
                queue.task_done()
                if item is None:  # the room was dropped, or the server stops
                    if pump.done() and not pump.cancelled() and pump.result():
                        await write(RESET)
                    break
                if type(item) is _End:  # the token expired, or this stream fell behind
                    stream.ending = True
                    await write(error_event(item.code, item.message))
                    break
                if stream.ending:  # an _End is queued behind this event: skip to it
                    continue
                await write(sse_message(item, self.boot))
        except ConnectionError:
            pass  # the browser went away
        finally:
            if expiry is not None:
                expiry.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._streams.pop(task, None)
        return resp

    async def _pump(self, events: AsyncIterator[pb.RoomEvent], first: pb.RoomEvent | None,
                    queue: asyncio.Queue, room_id: str) -> bool:
        """Feed -> writer, one event at a time, so the writer can wait with a keepalive
        timeout without ever cancelling the feed mid-event. A browser that reads slower
        than the room speaks is dropped like a slow Watch (the feed's bounds): it gets an
        error event, reconnects and resumes from where it was. Returns True when the room
        itself is gone (its feed ended)."""
        room_gone = False
        end: _End | None = None
        try:
            async with contextlib.aclosing(events):
                if first is not None:
                    queue.put_nowait(first)
                    await queue.join()
                async for e in events:
                    queue.put_nowait(e)
                    await queue.join()
            room_gone = True
        except FeedError as e:
            log.info("event stream of room %s ended: %s (%s)", clip(room_id), e.message,
                     e.code.name)
            end = _End(e.code, e.message)
        finally:
            queue.put_nowait(end)
        return room_gone

    # --------------------------------------------------------------- state events
    async def post_event(self, request: web.Request) -> web.Response:
        """A page's camera, mute or pin click, turned into the participant event a media
        server would send and processed the same way; the page then follows the decisions
        on its event stream (this response lists them too)."""
        p = self.principal(request, "publish")
        room_id = self.room_id(request, p)
        body = await self.json_body(request)
        unknown = sorted(set(body) - {"participant", "type"})
        if unknown:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, unknown[0][:64],
                           "unknown field (known: participant, type)")
        kind = body.get("type")
        if kind not in PAGE_EVENTS:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "type",
                           f"must be one of {', '.join(PAGE_EVENTS)}, got "
                           f"{clip(kind) if isinstance(kind, str) else type(kind).__name__}")
        pid = body.get("participant", "")
        if not isinstance(pid, str) or (not pid and kind != "UNPIN"):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "participant",
                           "must be a participant id (a non-empty string)")
        if pid:
            try:
                check_id(pid, "participant")  # 1..128 bytes, as in gRPC
            except TickError as e:
                raise ApiError(e.code, e.field, e.message) from None
        registry = self.running.registry
        # a batch that is waiting or being stepped (the RTP ingest's next ticks) would move
        # the room's time past the one read below before this tick's turn, and the tick
        # would be refused as going back in time: read it once no drain is running
        await self.running.group_commit.quiet()
        room = registry.room(room_id, p.tenant)
        if room is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, "room_id", f"no room {clip(room_id)}")
        if kind != "UNPIN" and pid not in room.slots:
            raise ApiError(grpc.StatusCode.NOT_FOUND, "participant",
                           f"no participant {clip(pid)} in room {clip(room_id)}")
        # at the room's current media time: an events-only tick may repeat it, and the
        # media server's next audio tick still advances past it
        tick = pb.RoomTick(room_id=room_id, timestamp_ms=room.last_t_ms or 0)
        tick.events.add(participant_id=pid,
                        type=pb.ParticipantEventType.Value("PARTICIPANT_EVENT_TYPE_" + kind))
        result = await self.running.group_commit.process(Batch(
            pb.StreamRequest(ticks=[tick]), time.monotonic(), p.tenant,
            p.room_allowed if p.rooms is not None else None))
        if result.rejections:
            r = result.rejections[0]
            raise ApiError(_CODES.get(r.code, grpc.StatusCode.INVALID_ARGUMENT), r.field,
                           r.message)
        return web.json_response({"events": [event_json(e) for e in result.events]})

    # --------------------------------------------------------------- demo
    async def get_demo(self, request: web.Request) -> web.Response:
        """Every room page asks; ``{"demo": false}`` rather than a 404 keeps its console
        clean outside demos."""
        return web.json_response({"demo": False} if self.demo is None else self.demo.as_json())

    async def demo_audio(self, request: web.Request) -> web.FileResponse:
        if self.demo is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, "demo", "not running a demo")
        return web.FileResponse(self.demo.audio, headers={"Content-Type": "audio/ogg"})


async def start_viewer(running: Serving, config: ServiceConfig,
                       authenticator: Authenticator | None) -> WebViewer:
    """Serve the viewer on ``config.http_host:http_port``; returns once the port is bound."""
    viewer = WebViewer(running, config, authenticator)
    await viewer.start(config.http_host, config.http_port)
    return viewer
