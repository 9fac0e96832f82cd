"""The asyncio client a media server calls per packet.

    async with SpeakerSwitchClient("127.0.0.1:50051", token=...) as ss:
        ss.on_switch = lambda room, switch: forward_main_feed(room.room_id, switch.speaker_id)
        await ss.push_level("room-1", "alice", level=25, voice=True, timestamp_ms=rtp_ms)

Pushes of every room wait in one buffer; every ``tick_ms`` (or on ``flush()``) they leave as
ONE request per stream for all rooms. Decisions come back to the callbacks and to
``decisions()`` in order, after the room's view (``room(id)``) has been updated.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import zlib
from collections.abc import AsyncIterator, Callable

import grpc

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc
from .batching import Batcher
from .errors import RETRYABLE, from_rpc
from .state import RoomView
from .stream import Backoff, Link

log = logging.getLogger("speakerswitch_client")

SHARD_HEADER = "x-speakerswitch-shard"
"""Request metadata a room-affine proxy hashes on (deploy/nginx, deploy/envoy)."""

DEFAULT_SHARDS = 16
"""What the blocking client's ``sharded_session`` splits rooms into."""

EVENT = pb.ParticipantEventType


def shard_of(room_id: str, shards: int = DEFAULT_SHARDS) -> int:
    """The shard of a room: every tick of a room goes down the stream of its shard, and the
    proxy sends each shard's stream to one replica. CRC-32 of the room id modulo the shard
    count, so any language computes it alike (zlib, java.util.zip.CRC32, Go's hash/crc32,
    clients/node)."""
    return zlib.crc32(room_id.encode()) % shards


def tls_credentials(ca_file: str | None = None, cert_file: str | None = None,
                    key_file: str | None = None) -> grpc.ChannelCredentials:
    """TLS with the system's roots (no ``ca_file``) or a private CA; a client certificate
    for mutual TLS."""
    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


async def _call(fn: Callable | None, *args) -> None:
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # the application's bug: logged, and the stream goes on
        log.exception("speakerswitch callback %s failed", getattr(fn, "__name__", fn))


class SpeakerSwitchClient:
    """Push audio and participant events of any number of rooms; get decisions.

    ``token``: a bearer token, or a function returning the current one (asked at every
    (re)connect). ``tls``: False (plaintext), True (system roots), or credentials from
    ``tls_credentials``. ``shards`` > 1: one stream per shard of rooms, carrying
    ``x-speakerswitch-shard`` for a room-affine proxy; a flush sends to all of them at once.

    Memory is bounded: at most ``max_pending`` packets wait for a flush (then ``push_*``
    waits), at most ``max_in_flight`` requests per stream wait for their answer (then the
    flush waits), at most ``max_decisions`` events wait in each ``decisions()`` iterator
    (then reading answers waits)."""

    on_switch: Callable[[RoomView, pb.Switch], object] | None = None
    on_floor: Callable[[RoomView, pb.FloorChange], object] | None = None
    on_active_speakers: Callable[[RoomView, list], object] | None = None
    on_speaking: Callable[[RoomView, object], object] | None = None
    on_forwarding: Callable[[RoomView, list[str]], object] | None = None
    on_presentation: Callable[[RoomView, pb.PresentationChanged], object] | None = None
    on_room_closed: Callable[[RoomView, str], object] | None = None
    on_rejection: Callable[[pb.Rejection], object] | None = None

    def __init__(self, target: str, token: str | Callable[[], str] | None = None,
                 tls: bool | grpc.ChannelCredentials = False, *, tick_ms: int = 20,
                 shards: int = 1, max_pending: int = 100_000, max_in_flight: int = 4,
                 max_decisions: int = 10_000, auto_flush: bool = True,
                 backoff: Backoff | None = None, server_name: str | None = None,
                 max_message_bytes: int = 16 * 1024 * 1024) -> None:
        self.target, self.token, self.tls = target, token, tls
        self.shards, self.max_pending = shards, max_pending
        self.max_in_flight, self.max_decisions = max_in_flight, max_decisions
        self.auto_flush, self.backoff = auto_flush, backoff or Backoff()
        self.batcher = Batcher(tick_ms)
        self.rooms: dict[str, RoomView] = {}
        self.rejections = 0
        self.error: Exception | None = None
        """What ended the client (a stream's fatal status); raised by the next call."""
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes),
                         # the channel redials on our backoff's scale, not gRPC's default
                         # (1 s growing to 120 s): a restarted server is back in seconds.
                         # Not grpc.min_reconnect_backoff_ms: gRPC takes it as the time a
                         # connection attempt may take (20 s), and at 50 ms a busy server's
                         # handshake failed the stream (UNAVAILABLE: "timed out before
                         # receiving SETTINGS frame")
                         ("grpc.initial_reconnect_backoff_ms",
                          int(self.backoff.initial_s * 1000) or 1),
                         ("grpc.max_reconnect_backoff_ms", int(self.backoff.max_s * 1000))]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._links: dict[int, Link] = {}
        self._subscribers: list[asyncio.Queue] = []
        self._space = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._flusher: asyncio.Task | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.SpeakerSwitchStub | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "SpeakerSwitchClient":
        if self.tls is False:
            if self.token and not self.target.startswith(("127.", "localhost", "[::1]")):
                log.warning("speakerswitch: a token over plaintext to %s: anyone on the path "
                            "can reuse it (pass tls=...)", self.target)
            self.channel = grpc.aio.insecure_channel(self.target, options=self._options)
        else:
            creds = grpc.ssl_channel_credentials() if self.tls is True else self.tls
            self.channel = grpc.aio.secure_channel(self.target, creds, options=self._options)
        self.stub = pb_grpc.SpeakerSwitchStub(self.channel)
        if self.auto_flush:
            self._flusher = asyncio.create_task(self._flush_every_tick())
        return self

    async def close(self) -> None:
        """Flush what is pending, wait for its answers, close the streams and channel."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)
        await asyncio.gather(*(link.close() for link in self._links.values()))
        for q in self._subscribers:  # the end, after what they have not read yet
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                asyncio.get_running_loop().create_task(q.put(None))
        if self.channel is not None:
            await self.channel.close()

    async def __aenter__(self) -> "SpeakerSwitchClient":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _metadata(self, shard: int | None = None) -> tuple:
        md: list[tuple[str, str]] = []
        token = self.token() if callable(self.token) else self.token
        if token:
            md.append(("authorization", f"Bearer {token}"))
        if shard is not None:
            md.append((SHARD_HEADER, str(shard)))
        return tuple(md)

    # ------------------------------------------------------------------ pushing
    async def _wait_for_space(self) -> None:
        while self.batcher.packets >= self.max_pending:
            self._raise_if_failed()
            self._space.clear()
            await self._space.wait()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        for link in self._links.values():
            if link.error is not None:
                raise link.error

    async def push_level(self, room: str, participant: str, level: int,
                         voice: bool | None, timestamp_ms: int) -> bool:
        """One packet's RFC 6464 level (0..127 -dBov) and V bit (None: the sender has no
        VAD). False when its tick has already left (a late packet, dropped as lost)."""
        if self.batcher.packets >= self.max_pending or self.error is not None:
            await self._wait_for_space()
        return self.batcher.add_level(room, participant, level, voice, timestamp_ms)

    async def push_pcm(self, room: str, participant: str, samples: bytes,
                       sample_rate_hz: int, timestamp_ms: int) -> bool:
        """One tick of 16-bit little-endian mono PCM (the server runs its VAD on it)."""
        await self._wait_for_space()
        return self.batcher.add_pcm(room, participant, samples, sample_rate_hz, timestamp_ms)

    async def push_event(self, room: str, participant: str, kind: int | str,
                         timestamp_ms: int | None = None) -> None:
        """A participant event (``"VIDEO_OFF"`` or ``ParticipantEventType``), sent with the
        room's next tick (or the tick of ``timestamp_ms``), before that tick's audio."""
        if isinstance(kind, str):
            kind = EVENT.Value("PARTICIPANT_EVENT_TYPE_" + kind.upper())
        await self._wait_for_space()
        self.batcher.add_event(room, participant, kind, timestamp_ms)

    async def join(self, room: str, participant: str, video: bool = True) -> None:
        await self.push_event(room, participant, "JOIN")
        if not video:
            await self.push_event(room, participant, "VIDEO_OFF")

    async def leave(self, room: str, participant: str) -> None:
        await self.push_event(room, participant, "LEAVE")

    async def set_video(self, room: str, participant: str, on: bool) -> None:
        await self.push_event(room, participant, "VIDEO_ON" if on else "VIDEO_OFF")

    async def set_muted(self, room: str, participant: str, muted: bool) -> None:
        await self.push_event(room, participant, "AUDIO_MUTED" if muted else "AUDIO_UNMUTED")

    async def set_screen_share(self, room: str, participant: str, on: bool) -> None:
        await self.push_event(room, participant,
                              "SCREEN_SHARE_ON" if on else "SCREEN_SHARE_OFF")

    async def pin(self, room: str, participant: str) -> None:
        await self.push_event(room, participant, "PIN")

    async def unpin(self, room: str) -> None:
        await self.push_event(room, "", "UNPIN")

    async def configure(self, room: str, config: pb.RoomConfig | None = None, **fields) -> None:
        """Room tuning from its next tick on: ``configure(room, profile="podcast")``."""
        await self._wait_for_space()
        self.batcher.set_config(room, config or pb.RoomConfig(**fields))

    # ------------------------------------------------------------------ sending
    def _link(self, shard: int | None) -> Link:
        key = -1 if shard is None else shard
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = Link(
                self.stub, lambda: self._metadata(shard), self._on_response,
                self.max_in_flight, self.backoff)
        return link

    async def flush(self) -> None:
        """Send everything pushed so far: one request per stream, all streams at once.
        Returns once sent (not answered); waits while the streams are ``max_in_flight``
        requests behind. Raises the error that ended a stream (e.g. AuthenticationError)."""
        if self.stub is None:
            raise RuntimeError("start() the client first (or use `async with`)")
        self._raise_if_failed()
        group = (lambda room: shard_of(room, self.shards)) if self.shards > 1 else None
        async with self._flushing:  # one flush at a time: a room's ticks leave in order
            built = self.batcher.take(group)
            self._space.set()
            if built:
                await asyncio.gather(*(self._send_all(self._link(shard), requests)
                                       for shard, requests in built.items()))

    @staticmethod
    async def _send_all(link: Link, requests: list) -> None:
        for built in requests:
            await link.send(built)

    async def _flush_every_tick(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.batcher.tick_ms / 1000
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.flush()
            except Exception as e:  # the next push or flush raises it to the caller
                log.error("speakerswitch stream failed: %s", e)
                self.error = e
                self._space.set()
                return
            if loop.time() > due + period:  # fell behind (backpressure): no burst to catch up
                due = loop.time()

    def stats(self) -> dict:
        """Counters for a dashboard: requests sent and answered, reconnects, refusals,
        late packets (dropped), what waits, and recent round trips (queued -> answered)."""
        links = list(self._links.values())
        rtts = sorted(r for link in links for r in link.rtt_s)

        def ms(q: float) -> float | None:
            return round(rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000, 2) if rtts \
                else None
        return dict(streams=len(links), requests=sum(k.requests for k in links),
                    responses=sum(k.responses for k in links),
                    in_flight=sum(len(k.unacked) for k in links),
                    reconnects=sum(k.reconnects for k in links), rejections=self.rejections,
                    late_packets=self.batcher.late, pending_packets=self.batcher.packets,
                    rtt_p50_ms=ms(0.5), rtt_p99_ms=ms(0.99))

    # ------------------------------------------------------------------ decisions
    def room(self, room_id: str) -> RoomView:
        """The room as its decisions describe it so far."""
        view = self.rooms.get(room_id)
        if view is None:
            view = self.rooms[room_id] = RoomView(room_id)
        return view

    async def _on_response(self, response: pb.StreamResponse) -> None:
        for r in response.rejections:
            self.rejections += 1
            if self.on_rejection is None:
                log.warning("refused: room %s %s: %s", r.room_id, r.field, r.message)
            await _call(self.on_rejection, r)
        for event in response.events:
            await self._dispatch(event)
        if response.events_omitted:
            log.warning("%d events left out of a response (Watch or GetRoom has them)",
                        response.events_omitted)

    async def _dispatch(self, event: pb.RoomEvent) -> None:
        view = self.room(event.room_id)
        kind = view.apply(event)
        if kind == "switch":
            await _call(self.on_switch, view, event.switch)
        elif kind == "floor_change":
            await _call(self.on_floor, view, event.floor_change)
        elif kind == "active_speakers":
            await _call(self.on_active_speakers, view, view.active_speakers)
        elif kind == "speaking_changed":
            await _call(self.on_speaking, view,
                        view.participants[event.speaking_changed.participant_id])
        elif kind == "forwarding":
            await _call(self.on_forwarding, view, view.forwarding)
        elif kind == "presentation":
            await _call(self.on_presentation, view, event.presentation)
        elif kind == "room_closed":
            await _call(self.on_room_closed, view, event.room_closed.reason)
        for q in self._subscribers:
            await q.put(event)  # a reader that falls behind slows the stream down

    async def decisions(self) -> AsyncIterator[pb.RoomEvent]:
        """Every decision of the rooms pushed through this client, in order, from now on."""
        q: asyncio.Queue = asyncio.Queue(self.max_decisions)
        self._subscribers.append(q)
        try:
            while (event := await q.get()) is not None:
                yield event
            self._raise_if_failed()
        finally:
            self._subscribers.remove(q)

    # ------------------------------------------------------------------ queries
    async def _unary(self, method: str, request, timeout_s: float):
        try:
            return await getattr(self.stub, method)(request, metadata=self._metadata(),
                                                    timeout=timeout_s)
        except grpc.RpcError as e:
            raise from_rpc(e) from None

    async def get_room(self, room_id: str, timeout_s: float = 10.0) -> pb.RoomState:
        return await self._unary("GetRoom", pb.GetRoomRequest(room_id=room_id), timeout_s)

    async def close_room(self, room_id: str, timeout_s: float = 10.0) -> int:
        """End a room now (its watchers get ``room_closed``); returns its last sequence.
        What is pending for it is flushed first, and a later push starts a new room."""
        await self.flush()
        for link in self._links.values():  # its ticks answered before it is closed
            async with link._window:
                await link._window.wait_for(lambda: not link.unacked or link.error)
        self.batcher.forget(room_id)
        reply = await self._unary("CloseRoom", pb.CloseRoomRequest(room_id=room_id),
                                  timeout_s)
        view = self.rooms.pop(room_id, None) or RoomView(room_id)
        view.closed, view.sequence = True, reply.sequence
        await _call(self.on_room_closed, view, "closed")
        return reply.sequence

    async def list_rooms(self, page_size: int = 1000) -> AsyncIterator[pb.RoomSummary]:
        """The tenant's rooms on this server, page after page."""
        after = ""
        while True:
            page = await self._unary(
                "ListRooms", pb.ListRoomsRequest(max_rooms=page_size, after_room_id=after),
                10.0)
            for r in page.rooms:
                yield r
            if not page.more or not page.rooms:
                return
            after = page.rooms[-1].room_id

    async def watch(self, room_id: str, wait_for_room: bool = True
                    ) -> AsyncIterator[pb.RoomEvent]:
        """Follow a room (from another process than the one pushing, typically): a snapshot
        first, then every event in order. A broken connection is resumed after the last
        sequence received, so nothing is missed and nothing comes twice; when the server no
        longer has those events (OUT_OF_RANGE: it restarted without Redis), a new snapshot
        comes instead. Ends after the room's ``room_closed``."""
        last: int | None = None
        attempt = 0
        while True:
            request = pb.WatchRequest(room_id=room_id, wait_for_room=wait_for_room)
            if last is not None:
                request.after_sequence = last
            call = self.stub.Watch(request, metadata=self._metadata())
            try:
                async for event in call:
                    attempt = 0
                    if event.HasField("snapshot"):
                        last = event.snapshot.sequence
                    elif last is not None and event.sequence <= last:
                        continue  # already delivered
                    else:
                        last = event.sequence
                    yield event
                    if event.HasField("room_closed"):
                        return
                return  # the server ended the watch: the room is gone
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                    last = None  # those events are gone: start again from a snapshot
                elif e.code() not in RETRYABLE:
                    raise from_rpc(e) from None
            finally:
                call.cancel()
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1
