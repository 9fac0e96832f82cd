"""A small typed client of the speakerswitch gRPC API (used by the CLI and the tests)."""
from __future__ import annotations

import contextlib
import queue
import time
import zlib
from collections.abc import Iterable, Iterator

import grpc

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc


_END = object()

SHARD_HEADER = "x-speakerswitch-shard"
"""Request metadata a room-affine proxy hashes on (deploy/nginx, deploy/envoy)."""
DEFAULT_SHARDS = 16


def shard_of(room_id: str, shards: int = DEFAULT_SHARDS) -> int:
    """The shard of a room: every tick of a room goes down the stream of its shard, and the
    proxy sends each shard's stream to one replica. CRC-32, so any language can compute it
    (zlib, java.util.zip.CRC32, Go's hash/crc32)."""
    return zlib.crc32(room_id.encode()) % shards


class StreamSession:
    """A media-server stream driven one request at a time: ``send`` returns the request's
    response (the server answers every request, in order)."""

    def __init__(self, stub: pb_grpc.SpeakerSwitchStub, metadata=None) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._responses = stub.Stream(iter(self._requests.get, _END), metadata=metadata)
        self._batch_id = 0

    def send(self, request: pb.StreamRequest) -> pb.StreamResponse:
        self.submit(request)
        return self.receive()

    def submit(self, request: pb.StreamRequest) -> None:
        """Queue a request without waiting for its answer (``receive`` it later, in order)."""
        if not request.batch_id:
            self._batch_id += 1
            request.batch_id = self._batch_id
        self._requests.put(request)

    def receive(self) -> pb.StreamResponse:
        """The answer to the oldest request not yet received."""
        return next(self._responses)

    def send_ticks(self, *ticks: pb.RoomTick) -> pb.StreamResponse:
        return self.send(pb.StreamRequest(ticks=list(ticks)))

    def close(self) -> None:
        self._requests.put(_END)
        for _ in self._responses:  # drain until the server ends the call
            pass

    def __enter__(self) -> "StreamSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardedSession:
    """A media server's stream split by room shard for a room-affine proxy: one stream per
    shard that has rooms, each opened with the shard in ``x-speakerswitch-shard``. A batch
    goes out as one request per shard; the responses come back merged, with rejection
    indexes referring to the caller's ticks. A stream that fails (its replica died) is
    reopened and its request sent again, up to ``retries`` times: the proxy routes the new
    stream to a live replica, which takes the rooms over from Redis."""

    def __init__(self, client: "Client", shards: int = DEFAULT_SHARDS, retries: int = 5,
                 retry_backoff_s: float = 0.05) -> None:
        self.client, self.shards = client, shards
        self.retries, self.retry_backoff_s = retries, retry_backoff_s
        self.sessions: dict[int, StreamSession] = {}
        self.reconnects = 0

    def _session(self, shard: int) -> StreamSession:
        s = self.sessions.get(shard)
        if s is None:
            s = self.sessions[shard] = self.client.session(((SHARD_HEADER, str(shard)),))
        return s

    def _send_shard(self, shard: int, ticks: list[pb.RoomTick],
                    failed: grpc.RpcError | None = None) -> pb.StreamResponse:
        """The shard's answer to ``ticks``; ``failed``: the first attempt already failed so."""
        for attempt in range(self.retries + 1):
            if failed is None:
                try:
                    return self._session(shard).send(pb.StreamRequest(ticks=ticks))
                except grpc.RpcError as e:
                    failed = e
            if attempt == self.retries or failed.code() not in (
                    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
                raise failed
            failed = None
            dead = self.sessions.pop(shard)
            with contextlib.suppress(grpc.RpcError):
                dead.close()
            self.reconnects += 1
            # the first retry at once: the proxy has usually marked the replica down
            time.sleep(self.retry_backoff_s * attempt)
        raise AssertionError("unreachable")

    def send_ticks(self, *ticks: pb.RoomTick) -> pb.StreamResponse:
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(ticks):
            groups.setdefault(shard_of(t.room_id, self.shards), []).append(i)
        # every shard's request goes out before any answer is awaited, so the replicas work
        # on them at the same time (shard after shard, 16 shards took 16 ms a batch where
        # one stream took 1.6)
        for shard, indexes in groups.items():
            self._session(shard).submit(pb.StreamRequest(ticks=[ticks[i] for i in indexes]))
        out = pb.StreamResponse()
        for shard, indexes in groups.items():
            try:
                resp = self.sessions[shard].receive()
            except grpc.RpcError as e:
                resp = self._send_shard(shard, [ticks[i] for i in indexes], failed=e)
            out.events.extend(resp.events)
            for r in resp.rejections:
                if r.field.startswith(f"ticks[{r.tick_index}]"):  # about one tick: renumber
                    k = r.tick_index
                    r.tick_index = indexes[k]
                    r.field = f"ticks[{indexes[k]}]" + r.field[len(f"ticks[{k}]"):]
                out.rejections.append(r)
        return out

    def close(self) -> None:
        for s in self.sessions.values():
            with contextlib.suppress(grpc.RpcError):
                s.close()
        self.sessions.clear()

    def __enter__(self) -> "ShardedSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


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
        if tls_ca_file or tls_cert_file:
            creds = grpc.ssl_channel_credentials(_read(tls_ca_file), _read(tls_key_file),
                                                 _read(tls_cert_file))
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.stub = pb_grpc.SpeakerSwitchStub(self.channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def stream(self, requests: Iterable[pb.StreamRequest]) -> Iterator[pb.StreamResponse]:
        """Open a media-server stream: one response per request, in order."""
        return self.stub.Stream(iter(requests), metadata=self.metadata)

    def session(self, extra_metadata: tuple[tuple[str, str], ...] = ()) -> StreamSession:
        """Open a media-server stream to send requests one by one."""
        return StreamSession(self.stub, (self.metadata or ()) + extra_metadata or None)

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
