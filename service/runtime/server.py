"""The gRPC server: Stream, Watch and GetRoom over one RoomRegistry, plus health checking,
reflection and the Prometheus endpoint."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.exceptions import RedisError

from ..api import speakerswitch_pb2 as pb
from ..api import speakerswitch_pb2_grpc as pb_grpc
from .auth import INSECURE, Authenticator, AuthError, Principal, clip
from .config import ServiceConfig, redacted_url
from .fanout import RedisFanout
from .feed import FeedError, LocalFeed, RoomFeed, WatchSlots, subscribe
from .metrics import LogLimiter, Metrics, MetricsServer
from .group_commit import GroupCommit
from .rooms import MAX_ID_BYTES, Batch, RoomRegistry, TickError, check_id
from .rtp_ingest import DEFAULT_AUDIO_LEVEL_ID, DEFAULT_CLOCK_RATE_HZ, RtpIngest
from .rtp_ingest import RtpSource as RtpSourceMapping
from .rtp_ingest import describe_key, key_field, source_key
from .rtp_ingest import source as rtp_source

if TYPE_CHECKING:
    from .rtp_server import RtpServer
    from .web import WebViewer

log = logging.getLogger("speakerswitch.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeakerSwitch"].full_name
MAX_LISTED_ROOMS = 1000
"""Rooms one ListRooms answer holds at most (the next page: after_room_id)."""
GRANT_OF = {f"/{SERVICE_NAME}/Stream": "publish", f"/{SERVICE_NAME}/Watch": "watch",
            f"/{SERVICE_NAME}/GetRoom": "watch", f"/{SERVICE_NAME}/ListRooms": "watch",
            f"/{SERVICE_NAME}/CloseRoom": "publish",
            f"/{SERVICE_NAME}/MapRtpSource": "publish",
            f"/{SERVICE_NAME}/UnmapRtpSource": "publish"}
"""The grant each method needs (health checking and reflection need none)."""
TOKEN_EXPIRED = "token expired: reconnect with a new one"


class _Call:
    """A call being served: who made it, and how to end it from outside its handler (its
    token expired; its watcher was dropped while the handler waited to write to a client
    that does not read). The status is sent first, then the handler is cancelled; a status
    held back by the handler's write to a client that does not read is waited for
    ABORT_WAIT_S, then the handler is cancelled anyway (the status follows that write)."""

    def __init__(self, context, principal: Principal, metrics: Metrics) -> None:
        self.context, self.principal, self.metrics = context, principal, metrics
        self.task = asyncio.current_task()
        self.ending = False
        self.finished = False
        self.timer: asyncio.TimerHandle | None = None
        self._ender: asyncio.Task | None = None
        context.add_done_callback(self._done)
        ends = principal.ends_s
        if ends is not None:
            self.timer = asyncio.get_running_loop().call_later(
                max(0.0, ends - time.time()), self.end, grpc.StatusCode.UNAUTHENTICATED,
                TOKEN_EXPIRED)

    def _done(self, _context) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()

    def end(self, code: grpc.StatusCode, message: str) -> None:
        """End the call with this status now, wherever its handler is (callable from a
        timer or the registry's processing: it only schedules)."""
        if self.ending or self.finished:
            return
        self.ending = True
        self.metrics.errors.labels(code.name).inc()
        self._ender = asyncio.get_running_loop().create_task(self._end(code, message))

    async def _end(self, code: grpc.StatusCode, message: str) -> None:
        abort = asyncio.ensure_future(self.context.abort(code, message))
        done, _ = await asyncio.wait([abort], timeout=ABORT_WAIT_S)
        if done:
            try:
                abort.result()
            except grpc.aio.AbortError:
                pass  # the status is sent: now stop the handler
            except Exception:  # noqa: BLE001 - the handler ended the call itself meanwhile
                return
        else:
            abort.add_done_callback(_retrieve)
        if self.task is not None:
            self.task.cancel()


ABORT_WAIT_S = 0.5
"""How long ending a call from outside waits for its status to be sent before it cancels
the handler anyway: a handler stuck writing to a client that does not read holds the
status behind that write for as long as the client does not read, and the handler holds
its watch slot meanwhile. A status that can go out does in well under a millisecond on a
busy server; half a second is long against that and short against a watch slot."""


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # an abort that finished after the handler was cancelled


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("speakerswitch_call")
"""The call the current task serves (each gRPC call runs in a task of its own)."""


class Received(NamedTuple):
    """A stream message as Stream sees it: decoded, with the bytes it came in (the
    registry reads steady ticks from them, service/runtime/wire.py). A named tuple: one
    is made per message (a frozen dataclass takes three times as long)."""
    request: pb.StreamRequest
    raw: bytes


class Guard(grpc.aio.ServerInterceptor):
    """The service's methods check the caller's token before the request is decoded: an
    unauthenticated caller never reaches the protobuf parser, and a request that does not
    decode is INVALID_ARGUMENT "malformed request" (one rate-limited WARNING line), not an
    UNKNOWN with a traceback. Unary requests (GetRoom, Watch) arrive as bytes and are
    decoded after authentication; Stream authenticates before it reads its first message,
    and its messages are decoded leniently."""

    def __init__(self, service: SpeakerSwitchService) -> None:
        self.service = service
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = await continuation(handler_call_details)
            grant = GRANT_OF.get(method)
            if handler is not None and grant is not None:
                handler = self._handlers[method] = self.service.guarded(handler, grant)
        return handler


class TokenBucket:
    """``rate`` per second with a burst of one second's worth; wall clock (a rate limit is
    about the service's own resources, not media time)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.t = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SpeakerSwitchService(pb_grpc.SpeakerSwitchServicer):
    def __init__(self, registry: RoomRegistry, metrics: Metrics, config: ServiceConfig,
                 authenticator: Authenticator | None, feed: RoomFeed,
                 fanout: RedisFanout | None = None,
                 watch_slots: WatchSlots | None = None) -> None:
        self.registry = registry
        self.feed = feed
        self.fanout = fanout
        self.metrics = metrics
        self.config = config
        self.authenticator = authenticator
        self.streams_per_tenant: dict[str, int] = {}
        self.group_commit = GroupCommit(registry, metrics)
        self.watch_slots = watch_slots or WatchSlots(config.max_watchers_per_tenant, metrics)
        self._log = LogLimiter()
        self.rtp_ingest: RtpIngest | None = None
        """The RTP ingest whose SSRC map MapRtpSource sets (``rtp_port`` >= 0)."""

    async def _principal(self, context, grant: str) -> Principal:
        """The caller, if its token is good and grants ``grant``; else the call ends with
        UNAUTHENTICATED or PERMISSION_DENIED (logged without the token). The call then ends
        by itself with UNAUTHENTICATED when the token expires (a timer: whether or not
        messages flow)."""
        call = _CALL.get(None)
        if call is not None and call.context is context:
            p = call.principal  # authenticated by Guard, before the request was decoded
        else:
            try:
                p = (INSECURE if self.authenticator is None
                     else self.authenticator.authenticate(context.invocation_metadata()))
            except AuthError as e:
                await self._deny(context, e)
            _CALL.set(_Call(context, p, self.metrics))
        try:
            p.require(grant)
        except AuthError as e:
            await self._deny(context, e)
        return p

    async def _deny(self, context, e: AuthError) -> None:
        self._log.warning(log, f"denied {e.code.name}", "denied a call from %s: %s (%s)",
                          context.peer(), e.message, e.code.name)
        self.metrics.errors.labels(e.code.name).inc()
        await self._abort(context, e.code, e.message)

    async def _abort(self, context, code: grpc.StatusCode, message: str) -> None:
        """``context.abort``, unless the call is already being ended from outside (a token
        expiry, a dropped watcher): then wait for that."""
        call = _CALL.get(None)
        if call is not None and call.context is context and call.ending:
            await asyncio.Future()  # cancelled once the status is sent
        await context.abort(code, message)

    # ------------------------------------------------------------ before decoding
    def guarded(self, handler: grpc.RpcMethodHandler, grant: str) -> grpc.RpcMethodHandler:
        """``handler`` (one of this service's) with the token checked before its request
        is decoded (see Guard)."""
        serialize = handler.response_serializer
        decode = handler.request_deserializer
        if handler.request_streaming:
            behavior = handler.stream_stream

            async def stream_stream(requests, context):  # grpc wants an async generator
                async with contextlib.aclosing(behavior(
                        self._decoded(requests, decode, context), context)) as responses:
                    async for response in responses:
                        yield response
            return grpc.stream_stream_rpc_method_handler(
                stream_stream, request_deserializer=None, response_serializer=serialize)
        if handler.response_streaming:
            behavior = handler.unary_stream

            async def unary_stream(raw, context):
                request = await self._decode(raw, decode, context, grant)
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=None, response_serializer=serialize)
        behavior = handler.unary_unary

        async def unary_unary(raw, context):
            return await behavior(await self._decode(raw, decode, context, grant), context)
        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=None, response_serializer=serialize)

    async def _decode(self, raw: bytes, decode, context, grant: str):
        await self._principal(context, grant)
        try:
            return decode(raw)
        except Exception:  # noqa: BLE001 - DecodeError, or anything a bad message raises
            await self._malformed(context, len(raw))

    async def _decoded(self, requests, decode, context):
        """Stream's messages, decoded here (after the token was checked) with their bytes;
        one that does not decode ends the call with INVALID_ARGUMENT."""
        async for raw in requests:
            try:
                request = decode(raw)
            except Exception:  # noqa: BLE001 - DecodeError, or anything a bad message raises
                await self._malformed(context, len(raw))
            yield Received(request, raw)

    async def _malformed(self, context, size: int) -> None:
        self._log.warning(log, "malformed", "malformed request from %s (%d bytes): refused "
                          "(INVALID_ARGUMENT)", context.peer(), size)
        self.metrics.errors.labels("INVALID_ARGUMENT").inc()
        await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed request")

    async def Stream(self, request_iterator, context):  # noqa: N802 (gRPC naming)
        principal = await self._principal(context, "publish")
        tenant = principal.tenant
        m = self.metrics
        if self.streams_per_tenant.get(tenant, 0) >= self.config.max_streams_per_tenant:
            m.errors.labels("RESOURCE_EXHAUSTED").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"limit max_streams_per_tenant="
                                f"{self.config.max_streams_per_tenant} reached")
        self.streams_per_tenant[tenant] = self.streams_per_tenant.get(tenant, 0) + 1
        bucket = TokenBucket(self.config.max_batches_per_s)
        room_allowed = principal.room_allowed if principal.rooms is not None else None
        m.streams.inc()
        self.group_commit.streams += 1
        try:
            async for received in request_iterator:
                t0 = time.perf_counter()
                request = received.request
                now = time.monotonic()
                if principal.expired():
                    await self._deny(context, AuthError(grpc.StatusCode.UNAUTHENTICATED,
                                                        "token expired: reconnect with a new one"))
                if not bucket.take(now):
                    m.errors.labels("RESOURCE_EXHAUSTED").inc()
                    yield pb.StreamResponse(batch_id=request.batch_id, rejections=[pb.Rejection(
                        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], field="ticks",
                        message=f"limit max_batches_per_s={self.config.max_batches_per_s:g} "
                                "exceeded; the batch was not processed")])
                    continue
                fanout = self.fanout
                if fanout is not None:
                    await fanout.restore_missing(self.registry, tenant, request, now)
                try:
                    response = await self.group_commit.process(
                        Batch(request, now, tenant, room_allowed, received.raw))
                except Exception:  # a bug must not take the server down with it
                    log.exception("internal error processing batch %d", request.batch_id)
                    m.errors.labels("INTERNAL").inc()
                    await context.abort(grpc.StatusCode.INTERNAL,
                                        f"internal error processing batch {request.batch_id}")
                if fanout is not None:  # in Redis before the media server sees it
                    await fanout.publish(self.registry, tenant, response)
                yield response
                m.processing_latency.observe(time.perf_counter() - t0)
        finally:
            m.streams.dec()
            self.group_commit.streams -= 1
            self.streams_per_tenant[tenant] -= 1
            if not self.streams_per_tenant[tenant]:
                del self.streams_per_tenant[tenant]

    async def _reader(self, context, room_id: str) -> Principal:
        """A caller that may read ``room_id`` (see _room_caller)."""
        return await self._room_caller(context, "watch", room_id)

    async def _room_caller(self, context, grant: str, room_id: str,
                           participant_id: str | None = None) -> Principal:
        """A caller with ``grant`` for ``room_id``: a good token, ids of 1..128 bytes (as in
        Stream), and the room inside the token's pattern; else the call ends with the
        status."""
        principal = await self._principal(context, grant)
        try:
            check_id(room_id, "room_id")
            if participant_id is not None:
                check_id(participant_id, "participant_id")
        except TickError as e:
            await self._fail(context, e.code, str(e))
        try:
            principal.check_room(room_id)
        except AuthError as e:
            await self._deny(context, e)
        return principal

    async def Watch(self, request, context):  # noqa: N802
        tenant = (await self._reader(context, request.room_id)).tenant
        after = request.after_sequence if request.HasField("after_sequence") else None
        try:
            self.watch_slots.take(tenant)  # max_watchers_per_tenant
        except FeedError as e:
            self.metrics.errors.labels(e.code.name).inc()
            await self._abort(context, e.code, e.message)
        call = _CALL.get(None)
        self.metrics.watchers.inc()
        try:
            # a watcher that falls behind is ended from outside its handler, which may be
            # stuck writing to a client that does not read
            async with contextlib.aclosing(subscribe(
                    self.feed, tenant, request.room_id, after_sequence=after,
                    wait_for_room=request.wait_for_room,
                    on_drop=None if call is None else lambda e: call.end(e.code, e.message)
                    )) as events:
                async for event in events:
                    yield event
        except FeedError as e:
            self.metrics.errors.labels(e.code.name).inc()
            await self._abort(context, e.code, e.message)
        finally:
            self.metrics.watchers.dec()
            self.watch_slots.release(tenant)

    async def GetRoom(self, request, context):  # noqa: N802
        principal = await self._reader(context, request.room_id)
        state = self.registry.room_state(request.room_id, principal.tenant)
        if state is None and self.fanout is not None:  # served by another replica
            try:
                state = await self.fanout.state(principal.tenant, request.room_id)
            except RedisError as e:
                self.metrics.errors.labels("UNAVAILABLE").inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"event store unavailable: {e}; retry")
        if state is None:
            self.metrics.errors.labels("NOT_FOUND").inc()
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"room_id: no room {clip(request.room_id)}")
        return state

    async def ListRooms(self, request, context):  # noqa: N802
        principal = await self._principal(context, "watch")
        if request.max_rooms > MAX_LISTED_ROOMS:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"max_rooms: {request.max_rooms} is over {MAX_LISTED_ROOMS}")
        if len(request.after_room_id.encode()) > MAX_ID_BYTES:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"after_room_id: longer than {MAX_ID_BYTES} bytes")
        rooms, more = self.registry.list_rooms(
            principal.tenant, request.after_room_id, request.max_rooms or MAX_LISTED_ROOMS,
            principal.room_allowed if principal.rooms is not None else None)
        return pb.ListRoomsResponse(rooms=rooms, more=more)

    async def CloseRoom(self, request, context):  # noqa: N802
        principal = await self._room_caller(context, "publish", request.room_id)
        await self.group_commit.quiet()  # then no await until the room is gone
        key = (principal.tenant, request.room_id)
        if key not in self.registry.rooms:
            await self._fail(context, grpc.StatusCode.NOT_FOUND,
                             f"room_id: no room {clip(request.room_id)}")
        return pb.CloseRoomResponse(sequence=self.registry.drop_room(key, reason="closed"))

    # ------------------------------------------------------------ RTP ingest mapping
    async def _rtp_ingest(self, context) -> RtpIngest:
        if self.rtp_ingest is None:
            await self._fail(context, grpc.StatusCode.FAILED_PRECONDITION,
                             "rtp_port: this server has no RTP ingest (serve --rtp-port)")
        return self.rtp_ingest

    async def _fail(self, context, code: grpc.StatusCode, message: str) -> None:
        self.metrics.errors.labels(code.name).inc()
        await self._abort(context, code, message)

    async def MapRtpSource(self, request, context):  # noqa: N802
        await self._principal(context, "publish")  # authenticated before anything is said
        ingest = await self._rtp_ingest(context)
        principal = await self._room_caller(context, "publish", request.room_id,
                                            request.participant_id)
        try:
            key = source_key(request.ssrc, request.source_port, request.source_host)
            src = rtp_source(request.room_id, request.participant_id, principal.tenant,
                             request.clock_rate_hz or DEFAULT_CLOCK_RATE_HZ,
                             request.audio_level_id or DEFAULT_AUDIO_LEVEL_ID,
                             not request.no_voice_activity, where="", l16=request.l16)
        except ValueError as e:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(e).lstrip("."))
        old = ingest.sources.get(key)
        if old is not None and old.tenant != principal.tenant:
            await self._fail(context, grpc.StatusCode.ALREADY_EXISTS,
                             f"{key_field(key)}: {describe_key(key)} is mapped by another "
                             "tenant")
        limit = self.registry.capacity.max_participants_per_tenant
        if old is None and sum(s.tenant == principal.tenant for s in ingest.sources.values()) \
                >= limit:
            self.metrics.limit_rejections.labels("max_participants_per_tenant").inc()
            await self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{key_field(key)}: the tenant maps max_participants_per_tenant="
                             f"{limit} sources already")
        # in the room from now on, not from its first packet: a media server may report its
        # camera state or a pin of it before it is heard (a browser sends the first audio a
        # second or so after it joins, and not at all while muted)
        await self._member_event(context, principal.tenant, request.room_id,
                                 request.participant_id, ET.PARTICIPANT_EVENT_TYPE_JOIN)
        ingest.map(key, src)
        if old is not None and old != src:  # the SSRC moved: its old participant leaves
            await self._leave_unless_mapped(context, ingest, old)
        return _rtp_source_message(key, src)

    async def UnmapRtpSource(self, request, context):  # noqa: N802
        principal = await self._principal(context, "publish")
        ingest = await self._rtp_ingest(context)
        try:
            key = source_key(request.ssrc, request.source_port, request.source_host)
        except ValueError as e:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(e).lstrip("."))
        old = ingest.sources.get(key)
        if old is None or old.tenant != principal.tenant:
            await self._fail(context, grpc.StatusCode.NOT_FOUND,
                             f"{key_field(key)}: {describe_key(key)} is not mapped")
        try:
            principal.check_room(old.room_id)
        except AuthError as e:
            await self._deny(context, e)
        ingest.unmap(key)
        await self._leave_unless_mapped(context, ingest, old)
        return pb.UnmapRtpSourceResponse(removed=_rtp_source_message(key, old))

    async def _leave_unless_mapped(self, context, ingest: RtpIngest,
                                   old: RtpSourceMapping) -> None:
        """An unmapped source's participant joined when it was mapped: it leaves now, even
        if it was never heard (the ingest's own LEAVE, for one that was, then finds it gone
        and does nothing), unless another SSRC is still mapped to it."""
        who = (old.tenant, old.room_id, old.participant_id)
        if not any((s.tenant, s.room_id, s.participant_id) == who
                   for s in ingest.sources.values()):
            await self._member_event(context, *who, ET.PARTICIPANT_EVENT_TYPE_LEAVE)

    async def _member_event(self, context, tenant: str, room_id: str, participant_id: str,
                            kind: int) -> None:
        """JOIN a participant the room does not have, or LEAVE one it has, at the room's
        media time (a new room starts at 0), through the group commit like any tick; a
        refusal (a participant limit) ends the call with its status."""
        await self.group_commit.quiet()  # then the room's time is not about to move on
        room = self.registry.room(room_id, tenant)
        present = room is not None and participant_id in room.slots
        if present == (kind == ET.PARTICIPANT_EVENT_TYPE_JOIN):
            return
        tick = pb.RoomTick(room_id=room_id,
                           timestamp_ms=(room.last_t_ms or 0) if room is not None else 0)
        tick.events.add(participant_id=participant_id, type=kind)
        result = await self.group_commit.process(
            Batch(pb.StreamRequest(ticks=[tick]), time.monotonic(), tenant))
        for r in result.rejections:
            await self._fail(context, _STATUS.get(r.code, grpc.StatusCode.INVALID_ARGUMENT),
                             f"participant_id: {r.message}")


_STATUS = {c.value[0]: c for c in grpc.StatusCode}
ET = pb.ParticipantEventType


def _rtp_source_message(key, src: RtpSourceMapping) -> pb.RtpSource:
    ssrc, (host, port) = (key, ("", 0)) if isinstance(key, int) else (0, key)
    return pb.RtpSource(ssrc=ssrc, source_port=port, source_host=host,
                        room_id=src.room_id, participant_id=src.participant_id,
                        clock_rate_hz=src.clock_rate_hz, audio_level_id=src.audio_level_id,
                        no_voice_activity=not src.voice_activity, l16=src.l16)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    registry: RoomRegistry
    metrics: Metrics
    health: health.aio.HealthServicer
    feed: RoomFeed
    _http: MetricsServer | None = None
    _gc_task: asyncio.Task | None = None
    fanout: RedisFanout | None = None
    web: WebViewer | None = None
    """The web viewer and its HTTP API (``http_port`` >= 0), on this event loop."""
    watch_slots: WatchSlots | None = None
    """Open Watch calls and viewer event streams per tenant (max_watchers_per_tenant)."""
    group_commit: GroupCommit | None = None
    """The one way into the registry while serving (Stream, the RTP ingest and the HTTP
    API's events), so that nothing runs between a sliced batch's engine steps."""
    rtp: RtpServer | None = None
    """The RTP ingest (``rtp_port`` >= 0)."""
    serving: asyncio.Event | None = None
    """Set once gRPC health says SERVING, cleared when the drain starts: the metrics port's
    ``/healthz`` (probes that cannot speak TLS)."""

    async def stop(self, grace_s: float | None = None) -> None:
        if self.serving is not None:
            self.serving.clear()
        await self.health.enter_graceful_shutdown()
        if self.web is not None:
            await self.web.stop()
        if self.rtp is not None:
            await self.rtp.stop()
        if self._gc_task is not None:
            self._gc_task.cancel()
        await self.server.stop(grace_s)
        if self.fanout is not None:
            await self.fanout.close()
        if self._http is not None:
            await self._http.close()


async def _collect_idle_rooms(registry: RoomRegistry, every_s: float,
                              group_commit: GroupCommit | None = None) -> None:
    while True:
        await asyncio.sleep(every_s)
        if group_commit is not None:
            await group_commit.quiet()  # not between a sliced batch's steps
        registry.collect_idle(time.monotonic())


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def authenticator_for(config: ServiceConfig) -> Authenticator | None:
    if config.insecure_no_auth:
        log.warning("*** --insecure-no-auth: every caller is accepted without a token, with "
                    "every grant. For local development only; never expose this port. ***")
        return None
    return Authenticator(
        _read(config.jwt_secret_file).strip() if config.jwt_secret_file else None,
        _read(config.jwt_public_key_file) if config.jwt_public_key_file else None,
        config.jwt_audience or None, config.jwt_issuer or None, config.jwt_leeway_s)


def server_credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert_file:
        return None
    ca = _read(config.tls_client_ca_file) if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key_file), _read(config.tls_cert_file))],
        root_certificates=ca, require_client_auth=ca is not None)


GC_THRESHOLDS = (50_000, 20, 20)
"""Python's cyclic collector, tuned for a server holding many long-lived room objects and
allocating short-lived ones per batch: with the default (700, 10, 10), collections of the
older generations stall a 1000-room batch by 10-20 ms several times a second (measured);
at these thresholds they are rare and the p99 batch time stays within ~10% of the median.
Reference cycles are still collected, later."""


async def start(config: ServiceConfig) -> RunningServer:
    """Start serving on the configured ports; returns once the ports are bound."""
    gc.set_threshold(*GC_THRESHOLDS)
    authenticator = authenticator_for(config)
    metrics = Metrics()
    registry = RoomRegistry(config, metrics)
    fanout = None
    feed: RoomFeed = LocalFeed(registry, config.watch_queue_events,
                               config.watch_bytes_per_tenant)
    if config.redis_url:
        fanout = RedisFanout(config.redis_url, config.redis_prefix, config.redis_stream_events,
                             config.redis_ttl_s, metrics)
        try:
            await fanout.connect()
        except (RedisError, OSError) as e:
            await fanout.close()
            raise OSError(f"redis_url: cannot reach {redacted_url(config.redis_url)}: {e}") \
                from None
        feed = fanout
    opts = [("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 1 if config.reuse_port else 0)]
    watch_slots = WatchSlots(config.max_watchers_per_tenant, metrics)
    service = SpeakerSwitchService(registry, metrics, config, authenticator, feed, fanout,
                                   watch_slots)
    server = grpc.aio.server(options=opts, interceptors=[Guard(service)])
    pb_grpc.add_SpeakerSwitchServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    creds = server_credentials(config)
    address = f"{config.host}:{config.port}"
    port = (server.add_secure_port(address, creds) if creds is not None
            else server.add_insecure_port(address))
    if port == 0:
        raise OSError(f"cannot bind gRPC to {config.host}:{config.port}")
    http = None
    metrics_port = None
    serving = asyncio.Event()
    if config.metrics_port >= 0:  # on this event loop: no thread per connection
        http = MetricsServer(metrics.registry, serving.is_set)
        metrics_port = await http.start(config.metrics_host, config.metrics_port)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    serving.set()
    gc_task = asyncio.create_task(_collect_idle_rooms(registry, config.gc_interval_s,
                                                      service.group_commit))
    gc.freeze()  # what start-up built lives as long as the process: never scan it again
    log.info("serving gRPC%s on %s:%d, metrics on %s%s",
             "" if creds is None else (" (mutual TLS)" if config.tls_client_ca_file else " (TLS)"),
             config.host, port,
             f"http://{config.metrics_host}:{metrics_port}/metrics" if metrics_port else "off",
             f", decisions shared through {redacted_url(config.redis_url)}" if fanout else "")
    log.info("limits: max_participants=%d%s, per tenant %d, max_rooms=%d",
             registry.capacity.max_participants,
             "" if config.max_participants else " (from the memory limit)",
             registry.capacity.max_participants_per_tenant, config.max_rooms)
    running = RunningServer(server, port, metrics_port, registry, metrics, health_servicer,
                            feed, http, gc_task, fanout, watch_slots=watch_slots,
                            group_commit=service.group_commit, serving=serving)
    if config.rtp_port >= 0:
        from .rtp_ingest import load_map
        from .rtp_server import RtpServer

        running.rtp = RtpServer(RtpIngest(load_map(config.rtp_map) if config.rtp_map else {},
                                          late_wait_ms=config.rtp_jitter_ms),
                                service.group_commit, metrics)
        service.rtp_ingest = running.rtp.ingest
        try:
            port_rtp = await running.rtp.start(config.rtp_host, config.rtp_port)
        except OSError:
            running.rtp = None
            await running.stop(0)
            raise
        log.info("RTP ingest on udp %s:%d (%d sources mapped)", config.rtp_host, port_rtp,
                 len(running.rtp.ingest.sources))
    if config.http_port >= 0:
        from .web import start_viewer

        try:
            running.web = await start_viewer(running, config, authenticator)
        except (OSError, ValueError):  # the HTTP port is taken, or plain HTTP refused: do
            await running.stop(0)        # not leave gRPC serving behind
            raise
    return running


async def serve(config: ServiceConfig) -> None:
    """Run until SIGINT/SIGTERM, then drain: health NOT_SERVING first, then stop with grace."""
    running = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.1f s)", config.grace_s)
    await running.stop(config.grace_s)
