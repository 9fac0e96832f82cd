"""Shared fixtures: a real gRPC server on an ephemeral loopback port, the sample
conversation, and small builders of requests."""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pathlib
import threading
import time

import grpc
import pytest

from service.tools import sample
from service.api import speakerswitch_pb2 as pb
from service.client import Client
from service.runtime.config import ServiceConfig
from service.runtime.server import RunningServer, start


if os.environ.get("TEST_MONOTONIC_FROM_ZERO"):
    # Run the suite as on a machine booted a moment ago: the monotonic clock this process
    # sees starts at 0 (`TEST_MONOTONIC_FROM_ZERO=1 make test`).
    _real_monotonic, _booted = time.monotonic, time.monotonic()
    time.monotonic = lambda: _real_monotonic() - _booted


ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_script(name: str, path: str):
    """A file of the repo that is no package module (benchmarks/, examples/), as module
    ``name``; ``path`` is relative to the repo's root."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ServerThread:
    """``service.runtime.server.start`` on its own event loop in a thread; stops by itself."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.running: RunningServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.running = self.loop.run_until_complete(start(self.config))
        except BaseException as e:  # reported to the test thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.running.stop(0), self.loop)
        fut.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop (the registry is not thread-safe)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)


def test_config(**changes) -> ServiceConfig:
    base = dict(port=0, metrics_port=0, gc_interval_s=0.05, insecure_no_auth=True)
    base.update(changes)
    return ServiceConfig(**base)


test_config.__test__ = False  # a builder, not a test

TOKEN_SECRET = b"tests-token-secret-that-is-long-enough-for-hs256"
"""The HS256 key of token_server(): tests sign their tokens with it through token()."""


def token(tenant="acme", grants=("publish", "watch"), rooms=None) -> str:
    """A token for token_server(), valid 10 minutes."""
    from service.runtime.auth import create_token
    return create_token(TOKEN_SECRET, tenant, list(grants), 600, rooms)


@contextlib.contextmanager
def token_server(tmp_path_factory, **changes):
    """A server that takes only tokens signed with TOKEN_SECRET (``changes``: config)."""
    secret = tmp_path_factory.mktemp("keys") / "secret"
    secret.write_bytes(TOKEN_SECRET)
    with ServerThread(test_config(insecure_no_auth=False, jwt_secret_file=str(secret),
                                  **changes)) as s:
        yield s


def call(server, method, request, tok, timeout=10):
    """One unary call of the SpeakerSwitch service with a bearer token."""
    from service.api import speakerswitch_pb2_grpc as pb_grpc
    stub = pb_grpc.SpeakerSwitchStub(grpc.insecure_channel(server.target))
    return getattr(stub, method)(request, metadata=[("authorization", f"Bearer {tok}")],
                                 timeout=timeout)


@pytest.fixture
def server():
    with ServerThread(test_config()) as s:
        yield s


@pytest.fixture
def client(server):
    with Client(server.target) as c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("sample")
    sample.write_sample(out)
    return out


def level_tick(room: str, t_ms: int, levels: dict[str, int], voice: dict[str, int] | None = None,
               **kw) -> pb.RoomTick:
    """A tick of RFC 6464 levels (voice: 1/0 per participant; missing = unspecified)."""
    tick = pb.RoomTick(room_id=room, timestamp_ms=t_ms, **kw)
    for pid, lv in levels.items():
        v = (voice or {}).get(pid)
        tick.audio.add(participant_id=pid, level=pb.AudioLevel(
            level=lv, voice=pb.VOICE_ACTIVITY_UNSPECIFIED if v is None else
            (pb.VOICE_ACTIVITY_PRESENT if v else pb.VOICE_ACTIVITY_ABSENT)))
    return tick


def script_levels(room: str, segments: list[tuple[str, int, int]], participants: list[str],
                  duration_ms: int, speech_level: int = 25, quiet_level: int = 70,
                  start_ms: int = 0) -> list[pb.RoomTick]:
    """20 ms level ticks where each (participant, start_ms, end_ms) segment talks (level
    ``speech_level`` with the V bit) and everyone else sits at ``quiet_level`` without it."""
    ticks = []
    for t in range(start_ms, start_ms + duration_ms, 20):
        lv, vc = {}, {}
        for p in participants:
            talking = any(s == p and a <= t < b for s, a, b in segments)
            lv[p] = speech_level if talking else quiet_level
            vc[p] = 1 if talking else 0
        ticks.append(level_tick(room, t, lv, vc, duration_ms=20))
    return ticks


def switches(events) -> list[tuple[int, str]]:
    return [(e.timestamp_ms, e.switch.speaker_id) for e in events if e.HasField("switch")]


@contextlib.contextmanager
def watching(client: Client, room_id: str, arrivals: list[float] | None = None):
    """Follow ``room_id`` with Watch (waiting for the room) in a thread; yields the list its
    events go into (and, if given, puts each one's wall-clock arrival in ``arrivals``). On
    exit the stream is cancelled and the thread joined."""
    seen: list[pb.RoomEvent] = []
    watch = client.watch(room_id, wait_for_room=True)

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end
            for event in watch:
                if arrivals is not None:
                    arrivals.append(time.time())
                seen.append(event)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        watch.cancel()
        reader.join(5)
