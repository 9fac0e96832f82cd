"""The blocking client, a thin layer on the asyncio one (the server's CLI and tests use it
as ``service.client``)::

    with Client("127.0.0.1:50051", token=...) as c, c.session() as s:
        response = s.send_ticks(tick_of_room_1, tick_of_room_2)

Sessions are the asyncio client's streams (``stream.Link``: answers in order, a window,
reconnect and resend) on its channel, run by an event loop on a private thread that the
first session starts; each blocking call waits there for its answer. The typed calls
(``stream``, ``watch``, ``get_room``) and ``channel`` are grpc's own blocking ones, because
their callers iterate, cancel and catch ``grpc.RpcError`` as grpc gives them; errors of
sessions are raised as that same ``grpc.RpcError``.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import threading
from collections.abc import Iterable, Iterator

import grpc

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc
from .batching import Built
from .client import DEFAULT_SHARDS, SHARD_HEADER, SpeakerSwitchClient, shard_of, tls_credentials
from .errors import SpeakerSwitchError
from .stream import Backoff, Link

__all__ = ["Client", "DEFAULT_SHARDS", "SHARD_HEADER", "ShardedSession", "StreamBroken",
           "StreamSession", "shard_of"]


async def _ignore(response: pb.StreamResponse) -> None:
    """A session's answers go to the caller that waits for them, not to callbacks."""


class StreamBroken(grpc.RpcError):
    """A session's stream that ended without a gRPC status of its own (the server closed
    it, or it broke mid-message), as the ``grpc.RpcError`` blocking callers catch."""

    def __init__(self, error: SpeakerSwitchError) -> None:
        super().__init__(str(error))
        self._error = error

    def code(self) -> grpc.StatusCode:
        return self._error.code

    def details(self) -> str:
        return self._error.details


def _rpc_error(e: SpeakerSwitchError) -> grpc.RpcError:
    """The gRPC error itself, as a blocking grpc call raises it."""
    return e.rpc_error or StreamBroken(e)


def _answer(future: concurrent.futures.Future) -> pb.StreamResponse:
    try:
        return future.result()
    except SpeakerSwitchError as e:
        raise _rpc_error(e) from None


class _LoopThread:
    """An event loop on a daemon thread, for the streams of one Client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="speakerswitch-client")
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class StreamSession:
    """A media-server stream driven one request at a time: ``send`` returns the request's
    response (the server answers every request, in order). It does not reconnect: a stream
    that fails raises its ``grpc.RpcError`` from ``send``/``receive``, then and after."""

    def __init__(self, client: "Client", extra_metadata: tuple[tuple[str, str], ...] = ()
                 ) -> None:
        self._client = client
        self._answers: collections.deque[concurrent.futures.Future] = collections.deque()
        self._closed = False
        # never held back: the caller decides how many it submits before it receives
        self._link = client._open_link(extra_metadata, max_in_flight=math.inf, retries=0)

    def send(self, request: pb.StreamRequest) -> pb.StreamResponse:
        self.submit(request)
        return self.receive()

    def submit(self, request: pb.StreamRequest) -> None:
        """Queue a request without waiting for its answer (``receive`` it later, in order).
        A request without a ``batch_id`` gets the stream's next one."""
        built = Built(request, [], answer=concurrent.futures.Future())
        self._client._run(self._link.send(built))
        self._answers.append(built.answer)

    def receive(self) -> pb.StreamResponse:
        """The answer to the oldest request not yet received."""
        return _answer(self._answers.popleft())

    def send_ticks(self, *ticks: pb.RoomTick) -> pb.StreamResponse:
        return self.send(pb.StreamRequest(ticks=list(ticks)))

    def close(self) -> None:
        """Wait for the answers still due, then end the stream."""
        if not self._closed:
            self._closed = True
            self._client._close_link(self._link)

    def __enter__(self) -> "StreamSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardedSession:
    """A media server's stream split by room shard for a room-affine proxy: one stream per
    shard that has rooms, each opened with the shard in ``x-speakerswitch-shard``. A batch
    goes out as one request per shard, all at once (each replica works on its share at the
    same time); the responses come back merged, with rejection indexes referring to the
    caller's ticks. A stream that fails (its replica died) is reopened and its request sent
    again, up to ``retries`` times in a row: the proxy routes the new stream to a live
    replica, which takes the rooms over from Redis."""

    def __init__(self, client: "Client", shards: int = DEFAULT_SHARDS, retries: int = 5,
                 retry_backoff_s: float = 0.05) -> None:
        self.client, self.shards = client, shards
        self.retries, self.retry_backoff_s = retries, retry_backoff_s
        self.sessions: dict[int, Link] = {}
        """Each shard's stream (``Link``; its ``reconnects`` count the reopenings)."""
        self._retired_reconnects = 0

    @property
    def reconnects(self) -> int:
        """Streams reopened after a failure, over every shard."""
        return self._retired_reconnects + sum(s.reconnects for s in self.sessions.values())

    def _session(self, shard: int) -> Link:
        """On the loop's thread."""
        link = self.sessions.get(shard)
        if link is None or link.error is not None:  # a stream that gave up: a new one
            if link is not None:
                self._retired_reconnects += link.reconnects
                self.client._close_link_soon(link)
            link = self.sessions[shard] = self.client._new_link(
                ((SHARD_HEADER, str(shard)),), max_in_flight=math.inf, retries=self.retries,
                backoff=Backoff(self.retry_backoff_s, max(1.0, self.retry_backoff_s)))
        return link

    async def _send(self, requests: dict[int, Built]) -> None:
        # every shard's request is queued before any answer is awaited (shard after shard,
        # 16 shards took 16 ms a batch where one stream took 1.6)
        await asyncio.gather(*(self._session(shard).send(built)
                               for shard, built in requests.items()))
        await asyncio.wait([asyncio.wrap_future(b.answer) for b in requests.values()])

    def send_ticks(self, *ticks: pb.RoomTick) -> pb.StreamResponse:
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(ticks):
            groups.setdefault(shard_of(t.room_id, self.shards), []).append(i)
        requests = {shard: Built(pb.StreamRequest(ticks=[ticks[i] for i in indexes]), [],
                                 answer=concurrent.futures.Future())
                    for shard, indexes in groups.items()}
        self.client._run(self._send(requests))
        out = pb.StreamResponse()
        for shard, indexes in groups.items():
            resp = _answer(requests[shard].answer)
            out.events.extend(resp.events)
            for r in resp.rejections:
                if r.field.startswith(f"ticks[{r.tick_index}]"):  # about one tick: renumber
                    k = r.tick_index
                    r.tick_index = indexes[k]
                    r.field = f"ticks[{indexes[k]}]" + r.field[len(f"ticks[{k}]"):]
                out.rejections.append(r)
        return out

    def close(self) -> None:
        for link in self.sessions.values():
            self.client._close_link(link)
        self.sessions.clear()

    def __enter__(self) -> "ShardedSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A blocking client: ``with Client("127.0.0.1:50051", token=...) as c: ...``.

    ``token`` is sent as ``authorization: Bearer`` on every call; ``tls_ca_file`` switches
    to TLS (with ``tls_cert_file``/``tls_key_file`` for mutual TLS)."""

    def __init__(self, target: str, token: str | None = None, tls_ca_file: str | None = None,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 max_message_bytes: int = 16 * 1024 * 1024,
                 server_name: str | None = None) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        creds = tls_credentials(tls_ca_file, tls_cert_file, tls_key_file) \
            if tls_ca_file or tls_cert_file else None
        if creds is not None:
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.stub = pb_grpc.SpeakerSwitchStub(self.channel)
        # the sessions' streams: the asyncio client's, on its own channel (started with
        # the first session)
        self.streams = SpeakerSwitchClient(target, token, creds or False, auto_flush=False,
                                           server_name=server_name,
                                           max_message_bytes=max_message_bytes)
        self._loop: _LoopThread | None = None
        self._links: set[Link] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.run(self._stop_streams())
            loop.stop()

    async def _stop_streams(self) -> None:
        tasks = [link._task for link in self._links]
        for link in self._links:  # sessions left open end with the client, as with grpc's
            link._task.cancel()
            link._answer_all(SpeakerSwitchError(grpc.StatusCode.CANCELLED,
                                                "the client was closed"))
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        await self.streams.close()

    # ------------------------------------------------------------------ the loop thread
    def _run(self, coro):
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = _LoopThread()
                    self._loop.run(self.streams.start())
                loop = self._loop
        try:
            return loop.run(coro)
        except SpeakerSwitchError as e:  # a stream that failed: its gRPC error, as grpc's
            raise _rpc_error(e) from None

    def _new_link(self, extra_metadata: tuple[tuple[str, str], ...], **kwargs) -> Link:
        """On the loop's thread: a stream opens (its task starts) with the Link."""
        link = Link(self.streams.stub, lambda: self.streams._metadata() + extra_metadata,
                    _ignore, **kwargs)
        self._links.add(link)
        return link

    def _open_link(self, extra_metadata: tuple[tuple[str, str], ...], **kwargs) -> Link:
        async def open_() -> Link:
            return self._new_link(extra_metadata, **kwargs)
        return self._run(open_())

    def _close_link(self, link: Link) -> None:
        if self._loop is not None and link in self._links:
            self._links.discard(link)
            self._run(link.close())

    def _close_link_soon(self, link: Link) -> None:
        """From the loop's thread: end a stream that gave up, without waiting."""
        self._links.discard(link)
        asyncio.get_running_loop().create_task(link.close())

    # ------------------------------------------------------------------ typed calls
    def wait_ready(self, timeout_s: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def stream(self, requests: Iterable[pb.StreamRequest]) -> Iterator[pb.StreamResponse]:
        """Open a media-server stream: one response per request, in order."""
        return self.stub.Stream(iter(requests), metadata=self.metadata)

    def session(self, extra_metadata: tuple[tuple[str, str], ...] = ()) -> StreamSession:
        """Open a media-server stream to send requests one by one."""
        return StreamSession(self, tuple(extra_metadata))

    def sharded_session(self, shards: int = DEFAULT_SHARDS) -> ShardedSession:
        """Streams split by room shard, for replicas behind a room-affine proxy."""
        return ShardedSession(self, shards)

    def get_room(self, room_id: str, timeout_s: float = 10.0) -> pb.RoomState:
        return self.stub.GetRoom(pb.GetRoomRequest(room_id=room_id), timeout=timeout_s,
                                 metadata=self.metadata)

    def watch(self, room_id: str, wait_for_room: bool = False,
              after_sequence: int | None = None) -> Iterator[pb.RoomEvent]:
        """Follow a room: a snapshot event first, then every later event; or, resuming with
        ``after_sequence``, the events after it (no snapshot)."""
        request = pb.WatchRequest(room_id=room_id, wait_for_room=wait_for_room)
        if after_sequence is not None:
            request.after_sequence = after_sequence
        return self.stub.Watch(request, metadata=self.metadata)
