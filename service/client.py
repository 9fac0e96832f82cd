"""A small typed client of the speakerswitch gRPC API (used by the CLI and the tests)."""
from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator

import grpc

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc


_END = object()


class StreamSession:
    """A media-server stream driven one request at a time: ``send`` returns the request's
    response (the server answers every request, in order)."""

    def __init__(self, stub: pb_grpc.SpeakerSwitchStub, metadata=None) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._responses = stub.Stream(iter(self._requests.get, _END), metadata=metadata)
        self._batch_id = 0

    def send(self, request: pb.StreamRequest) -> pb.StreamResponse:
        if not request.batch_id:
            self._batch_id += 1
            request.batch_id = self._batch_id
        self._requests.put(request)
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

    def session(self) -> StreamSession:
        """Open a media-server stream to send requests one by one."""
        return StreamSession(self.stub, self.metadata)

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
