"""The blocking client's batch of 300 rooms x 6 through a server of its own process: on one
stream, and split over 16 shard streams (``Client.sharded_session``, as behind a room-affine
proxy, here all to the one server). Shard after shard, 16 shards took 16 ms a batch where
one stream took 1.6 (issue 24); every shard's request now goes out before any answer is
awaited. Run with ``make bench`` (a quiet machine: the server and the client share it)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from service.api import speakerswitch_pb2 as pb
from service.client import Client

ROOMS, PARTICIPANTS, ROUNDS = 300, 6, 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def target():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
                             "--port", str(port), "--metrics-port", "-1",
                             "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() - t0 < 30 and proc.poll() is None
            time.sleep(0.01)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _batch(prefix: str, k: int) -> list[pb.RoomTick]:
    """One tick of every room: RFC 6464 bytes by roster (sent on the first tick only)."""
    ticks = []
    for r in range(ROOMS):
        t = pb.RoomTick(room_id=f"{prefix}-{r}", timestamp_ms=20 * k, duration_ms=20)
        if k == 0:
            t.levels.roster.extend(f"p{i}" for i in range(PARTICIPANTS))
        speaker = (k // 100 + r) % PARTICIPANTS
        t.levels.levels = bytes((0x80 | 25) if i == speaker else 70
                                for i in range(PARTICIPANTS))
        ticks.append(t)
    return ticks


def _run(benchmark, target: str, shards: int | None) -> None:
    prefix = f"shards{shards}" if shards else "one"
    batches = [_batch(prefix, k) for k in range(ROUNDS + 11)]
    with Client(target) as c:
        session = c.sharded_session(shards) if shards else c.session()
        with session:
            session.send_ticks(*batches[0])
            rest = iter(batches[1:])

            def one_batch() -> None:
                resp = session.send_ticks(*next(rest))
                assert not resp.rejections, resp.rejections[:1]
            benchmark.pedantic(one_batch, rounds=ROUNDS, iterations=1, warmup_rounds=10)
    benchmark.extra_info["rooms"] = ROOMS
    benchmark.extra_info["streams"] = shards or 1


def test_blocking_batch_on_one_stream(benchmark, target):
    _run(benchmark, target, None)


def test_blocking_batch_over_16_shard_streams(benchmark, target):
    _run(benchmark, target, 16)
