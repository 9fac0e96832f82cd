"""A light gRPC load client for the load ramp, the soak and the worker-scaling figure.

Why a client of its own: the load client shares this machine's two cores with the server,
so every millisecond it spends building protobufs is a millisecond the server does not get,
and shows up as server latency. Here each tick's request is written straight into bytes
from a numpy template (``TickEncoder``: fixed-width room ids and timestamps, so one tick is
a few array writes and one ``tobytes()``), sent raw on a generic stream
(``request_serializer=None``), and only the ``batch_id`` of each raw response is read
(``response_deserializer=None``): no protobuf work per tick on the client.
``TickEncoder`` output is byte-identical to ``SerializeToString()`` of the same message
(checked by tests/test_loadgen.py), so the server sees exactly what a real client sends.

Latency is measured twice: the client's round trip (send -> its response read), and the
server's own processing latency (message received -> its decisions sent, the issue's
definition) from the Prometheus histogram ``speakerswitch_processing_latency_seconds``,
scraped before and after the measured window so warm-up is excluded (``HistogramWindow``).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from service.api import speakerswitch_pb2 as pb  # noqa: E402

TICK_MS = 20
STREAM_METHOD = "/speakerswitch.v1.SpeakerSwitch/Stream"
TS0_MS = 16_400
"""Media time of tick 0: 2**14 <= t < 2**21 keeps every timestamp a 3-byte varint, so the
template's layout never changes (good for ~34 minutes of ticks; a multiple of TICK_MS)."""
TS_MAX_MS = (1 << 21) - 1
ROOM_ID_DIGITS = 6
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 15.0
MAX_MESSAGE_BYTES = 64 << 20
DRAIN_TIMEOUT_S = 30.0
"""How long a step waits for a behind server's last answers before counting them missing."""


# ---------------------------------------------------------------- wire encoding
def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def room_id(r: int) -> str:
    return f"room-{r:0{ROOM_ID_DIGITS}d}"


def ts_ms(k: int) -> int:
    return TS0_MS + k * TICK_MS


def levels_for(k: int, n_rooms: int, n: int, first_room: int = 0) -> np.ndarray:
    """Tick k of every room, shape (n_rooms, n): 3 s turns, each room's turns starting at
    its own phase (rooms are not synchronized in real life), with a syllabic on/off
    pattern; the others sit at room noise; V bit on speech."""
    rooms = np.arange(first_room, first_room + n_rooms)
    phase = k + 37 * rooms
    talker = (phase // 150 + rooms) % n
    lv = np.full((n_rooms, n), 68, np.uint8)
    on = (phase % 12) < 9
    lv[np.arange(n_rooms), talker] = np.where(on, 0x80 | 24, 60)
    return lv


class TickEncoder:
    """Serialized RoomTicks (levels form, sticky roster) for rooms ``first_room ..
    first_room + n_rooms - 1`` with ``n`` participants each, one fixed-size record per
    room, so that a tick is two column writes into a uint8 array.

    Record (field numbers of speakerswitch.proto): StreamRequest.ticks(2) { room_id(1),
    timestamp_ms(2) as a 3-byte varint, duration_ms(3) = 20, levels(6) { levels(2) } }.
    """

    def __init__(self, first_room: int, n_rooms: int, n: int) -> None:
        assert 0 < n < 120, "one-byte lengths"
        self.first_room, self.n_rooms, self.n = first_room, n_rooms, n
        ids = [room_id(r).encode() for r in range(first_room, first_room + n_rooms)]
        id_len = len(ids[0])
        assert all(len(i) == id_len for i in ids), "fixed-width room ids"
        body = 2 + id_len + 4 + 2 + 2 + 2 + n
        assert body < 128
        rec = np.zeros((n_rooms, 2 + body), np.uint8)
        rec[:, 0], rec[:, 1] = 0x12, body
        rec[:, 2], rec[:, 3] = 0x0A, id_len
        rec[:, 4:4 + id_len] = np.frombuffer(b"".join(ids), np.uint8).reshape(n_rooms, id_len)
        c = 4 + id_len
        rec[:, c] = 0x10
        self.ts_col = c + 1
        c += 4
        rec[:, c], rec[:, c + 1] = 0x18, TICK_MS
        rec[:, c + 2], rec[:, c + 3] = 0x32, 2 + n
        rec[:, c + 4], rec[:, c + 5] = 0x12, n
        self.lv_col = c + 6
        self.rec = rec
        self.ids = [i.decode() for i in ids]

    def set_tick(self, k: int, levels: np.ndarray) -> None:
        t = ts_ms(k)
        assert 1 << 14 <= t <= TS_MAX_MS
        self.rec[:, self.ts_col:self.ts_col + 3] = (
            (t & 0x7F) | 0x80, ((t >> 7) & 0x7F) | 0x80, t >> 14)
        self.rec[:, self.lv_col:self.lv_col + self.n] = levels

    def batch(self, batch_id: int, k: int) -> bytes:
        """All rooms' tick k in one serialized StreamRequest."""
        self.set_tick(k, levels_for(k, self.n_rooms, self.n, self.first_room))
        return b"\x08" + varint(batch_id) + self.rec.tobytes()

    def per_room(self, first_batch_id: int, k: int) -> list[bytes]:
        """Tick k as one serialized StreamRequest per room (batch ids consecutive)."""
        self.set_tick(k, levels_for(k, self.n_rooms, self.n, self.first_room))
        return [b"\x08" + varint(first_batch_id + i) + row.tobytes()
                for i, row in enumerate(self.rec)]

    def roster_batch(self, batch_id: int, k: int = 0) -> bytes:
        """Tick k with the roster (the first tick: creates the rooms), built the normal
        way; not on the hot path."""
        req = pb.StreamRequest(batch_id=batch_id)
        roster = [f"p{i}" for i in range(self.n)]
        for rid, lv in zip(self.ids, levels_for(k, self.n_rooms, self.n, self.first_room)):
            t = req.ticks.add(room_id=rid, timestamp_ms=ts_ms(k), duration_ms=TICK_MS)
            t.levels.roster.extend(roster)
            t.levels.levels = lv.tobytes()
        return req.SerializeToString()


def response_batch_id(raw: bytes) -> int:
    """batch_id (field 1, first in a serialized StreamResponse; 0 is never used here)."""
    if not raw or raw[0] != 0x08:
        return 0
    v, shift, i = 0, 0, 1
    while True:
        b = raw[i]
        v |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return v
        shift += 7


# ---------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    """This process's CPU seconds, every thread (gRPC's included)."""
    t = os.times()
    return t.user + t.system


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy (not idle or iowait), from
    /proc/stat: minus our server's and client's share, what other jobs took."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds over a measured stretch of wall time: each server process's, this
    client's, and what other jobs on the machine took meanwhile (a shared machine)."""

    def __init__(self, pids: list[int]) -> None:
        self.server0 = {p: cpu_s(p) for p in pids}
        self.client0, self.busy0 = self_cpu_s(), machine_busy_s()
        self.t0 = time.perf_counter()

    def shares(self) -> dict:
        """Since construction: wall seconds and every CPU share (1.0 = one core)."""
        wall = time.perf_counter() - self.t0
        client = self_cpu_s() - self.client0
        server = [cpu_s(p) - c for p, c in self.server0.items()]
        other = machine_busy_s() - self.busy0 - client - sum(server)
        return dict(wall_s=wall, worker_cpu_s=server,
                    server_cpu_share=round(sum(server) / wall, 3),
                    worker_cpu_share=[round(c / wall, 3) for c in server],
                    client_cpu_share=round(client / wall, 3),
                    other_cpu_share=round(max(0.0, other) / wall, 3))


def sleep_until(due: float) -> bool:
    """Pace a sender to the wall clock: sleep until ``due`` (a perf_counter time); True
    if it is already more than a tick late (the sender itself fell behind)."""
    now = time.perf_counter()
    if now < due:
        time.sleep(due - now)
        return False
    return now - due > TICK_MS / 1000


def worker_pids(pid: int) -> list[int]:
    """The serving processes under ``pid``: itself, or its spawned workers (not the
    multiprocessing helpers)."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
    workers = []
    for k in kids:
        with contextlib.suppress(OSError):
            if b"spawn_main" in open(f"/proc/{k}/cmdline", "rb").read():
                workers.append(k)
    return sorted(workers) or [pid]


@dataclass
class Server:
    """A ``speakerswitch serve`` of our own on loopback; a context manager that always
    stops it (SIGTERM, then SIGKILL) on the way out, also on errors and Ctrl-C."""
    workers: int = 1
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment (SPEAKERSWITCH_* settings that have no flag)."""
    command: tuple[str, ...] = ("-m", "service.cli", "serve")
    """What runs: the real server, or benchmarks/echo_server.py (the framework's floor)."""
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_ports(self) -> list[int]:
        return [self.metrics_port + i for i in range(self.workers)]

    def __enter__(self) -> Server:
        self.port = free_port()
        self.metrics_port = free_port_block(self.workers)
        self.proc = subprocess.Popen(
            [sys.executable, *self.command,
             *(() if "--jwt-secret-file" in self.extra_args else ("--insecure-no-auth",)),
             "--port", str(self.port), "--metrics-port", str(self.metrics_port),
             "--log-level", "WARNING", "--workers", str(self.workers), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **self.env},
            cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            for mp in self.metrics_ports:
                while True:
                    try:
                        scrape(mp)
                        break
                    except OSError:
                        if self.proc.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError("speakerswitch serve did not start") from None
                        time.sleep(0.05)
            with grpc.insecure_channel(self.target) as ch:
                grpc.channel_ready_future(ch).result(timeout=SERVER_START_TIMEOUT_S)
            self.pids = worker_pids(self.proc.pid)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for p in self.pids:  # a worker left behind by a killed parent
            if p != self.proc.pid:
                with contextlib.suppress(OSError):
                    os.kill(p, 9)


def free_port_block(n: int) -> int:
    """A port p with p .. p+n-1 all free now (workers serve metrics on port + i)."""
    for _ in range(100):
        p = free_port()
        if p + n > 65535:
            continue
        ok = True
        for i in range(1, n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p + i))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
    raise OSError("no block of free ports")


# ---------------------------------------------------------------- metrics
def scrape(metrics_port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()


PROCESSING = "speakerswitch_processing_latency_seconds"


def histogram(text: str, name: str = PROCESSING) -> dict[float, float]:
    """Cumulative bucket counts {le: count} of a Prometheus histogram."""
    out = {}
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        out[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return out


def counter(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def quantile(buckets: dict[float, float], q: float) -> tuple[float, float]:
    """(interpolated estimate, bucket upper bound) of quantile q from cumulative buckets,
    in seconds; the bound is what the histogram proves ("p99 <= bound")."""
    les = sorted(buckets)
    total = buckets[les[-1]] if les else 0
    if total <= 0:
        return float("nan"), float("nan")
    target = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= target:
            if le == float("inf"):
                return prev_le, le
            frac = (target - prev_c) / (c - prev_c) if c > prev_c else 1.0
            return prev_le + frac * (le - prev_le), le
        prev_le, prev_c = le, c
    return float("nan"), float("nan")


class HistogramWindow:
    """Processing-latency histogram and error count summed over the server's workers,
    between ``start()`` and ``stop()``."""

    def __init__(self, metrics_ports: list[int]) -> None:
        self.ports = metrics_ports
        self.before: dict[float, float] = {}
        self.delta: dict[float, float] = {}
        self.errors = 0.0
        self.counts: dict[str, float] = {}
        self._counts0: dict[str, float] = {}

    COUNTERS = ("speakerswitch_errors_total", "speakerswitch_frames_total",
                "speakerswitch_switches_total")

    def _read(self) -> tuple[dict[float, float], dict[str, float]]:
        total: dict[float, float] = {}
        counts = dict.fromkeys(self.COUNTERS, 0.0)
        for p in self.ports:
            text = scrape(p)
            for le, c in histogram(text).items():
                total[le] = total.get(le, 0.0) + c
            for name in self.COUNTERS:
                counts[name] += counter(text, name)
        return total, counts

    def start(self) -> None:
        self.before, self._counts0 = self._read()

    def stop(self) -> None:
        after, counts = self._read()
        self.delta = {le: c - self.before.get(le, 0.0) for le, c in after.items()}
        self.counts = {k: v - self._counts0[k] for k, v in counts.items()}
        self.errors = self.counts["speakerswitch_errors_total"]

    def summary(self) -> dict:
        p50, p50_le = quantile(self.delta, 0.5)
        p99, p99_le = quantile(self.delta, 0.99)
        return dict(proc_batches=int(max(self.delta.values(), default=0)),
                    frames=int(self.counts.get("speakerswitch_frames_total", 0)),
                    switches=int(self.counts.get("speakerswitch_switches_total", 0)),
                    proc_p50_ms=round(p50 * 1000, 2), proc_p99_ms=round(p99 * 1000, 2),
                    proc_p50_le_ms=p50_le * 1000, proc_p99_le_ms=p99_le * 1000)


# ---------------------------------------------------------------- streams
class RawStream:
    """One bidirectional Stream call on a channel of its own, sending pre-serialized
    requests and reading only each response's batch_id; round trips in ``rtt_s``.

    Separate channels with a distinct argument do not share a subchannel (a TCP
    connection), so with ``serve --workers N`` each stream lands on a worker of the
    kernel's choosing (SO_REUSEPORT)."""

    def __init__(self, target: str, index: int) -> None:
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1),
            ("speakerswitch.loadgen_stream", index)])
        grpc.channel_ready_future(self.channel).result(timeout=SERVER_START_TIMEOUT_S)
        self.call = self.channel.stream_stream(STREAM_METHOD, request_serializer=None,
                                               response_deserializer=None)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.sent_at: dict[int, float] = {}
        self.rtt_s: list[tuple[float, float]] = []  # (sent at, round trip)
        self.answered = 0
        self.on_response = None  # optional callback(batch_id), on the reader thread
        self.error: BaseException | None = None
        self._responses = self.call(self._requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[bytes]:
        while True:
            r = self.outbox.get()
            if r is None:
                return
            yield r

    def _read(self) -> None:
        try:
            for raw in self._responses:
                now = time.perf_counter()
                bid = response_batch_id(raw)
                t = self.sent_at.pop(bid, None)
                if t is not None:
                    self.rtt_s.append((t, now - t))
                self.answered += 1
                if self.on_response is not None:
                    self.on_response(bid)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = e

    def send(self, batch_id: int, raw: bytes) -> None:
        self.sent_at[batch_id] = time.perf_counter()
        self.outbox.put(raw)

    def close(self, timeout_s: float = 60.0) -> None:
        self.outbox.put(None)
        self._reader.join(timeout_s)
        if self._reader.is_alive():
            self._responses.cancel()
            self._reader.join(5)
        self.channel.close()

    def wait_answered(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.answered < n:
            if self.error is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


def rtt_summary(rtts: list[float]) -> dict:
    if not rtts:
        return dict(rtt_p50_ms=float("nan"), rtt_p99_ms=float("nan"), rtt_max_ms=float("nan"))
    a = np.asarray(rtts) * 1000
    return dict(rtt_p50_ms=round(float(np.percentile(a, 50)), 2),
                rtt_p99_ms=round(float(np.percentile(a, 99)), 2),
                rtt_max_ms=round(float(a.max()), 2))


def open_balanced(server: Server, n_streams: int, encoders: list[TickEncoder],
                  attempts: int = 40) -> list[RawStream]:
    """Open one stream per encoder, each created with its roster tick, and keep each on a
    worker that has fewer than its share: SO_REUSEPORT hashes connections, so two streams
    land on the same worker half the time; such a stream is closed and reopened."""
    share = -(-n_streams // server.workers)
    streams: list[RawStream] = []
    load = {p: 0 for p in server.metrics_ports}
    for i, enc in enumerate(encoders):
        for attempt in range(attempts):
            s = RawStream(server.target, i * attempts + attempt)
            s.send(1, enc.roster_batch(1, 0))
            if not s.wait_answered(1, 60):
                raise RuntimeError(f"stream {i}: no answer to its first batch ({s.error})")
            if server.workers == 1:
                streams.append(s)
                break
            now = {p: streams_gauge(p) for p in server.metrics_ports}
            gained = [p for p in now if now[p] > load[p]]
            if gained and now[gained[0]] <= share:
                load = now
                streams.append(s)
                break
            s.close()
            # wait for the server to see it gone before the next attempt
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                    streams_gauge(p) > load[p] for p in server.metrics_ports):
                time.sleep(0.02)
        else:
            raise RuntimeError(f"could not balance {n_streams} streams over {server.workers} "
                               "workers")
    return streams


def streams_gauge(metrics_port: int) -> float:
    return counter(scrape(metrics_port), "speakerswitch_streams")


# ---------------------------------------------------------------- drivers
def drive_realtime(server: Server, rooms: int, participants: int, seconds: float,
                   n_streams: int = 1, warmup_s: float = 1.0) -> dict:
    """One batch per 20 ms tick per stream, carrying every room of that stream, paced to
    the wall clock; measures after ``warmup_s``. Returns the step's figures."""
    per = -(-rooms // n_streams)
    encoders = [TickEncoder(s * per, min(per, rooms - s * per), participants)
                for s in range(n_streams) if s * per < rooms]
    streams = open_balanced(server, len(encoders), encoders)
    hist = HistogramWindow(server.metrics_ports)
    n_ticks = int(seconds * 1000 / TICK_MS)
    warm_ticks = int(warmup_s * 1000 / TICK_MS)
    late = 0
    rss = {"start": sum(rss_kib(p) for p in server.pids)}
    encode_s = 0.0
    try:
        t0 = time.perf_counter()
        for k in range(1, n_ticks + 1):
            if k == warm_ticks:
                hist.start()
                window = CpuWindow(server.pids)
            late += sleep_until(t0 + k * TICK_MS / 1000)
            for s, enc in zip(streams, encoders):
                e0 = time.perf_counter()
                raw = enc.batch(k + 1, k)
                encode_s += time.perf_counter() - e0
                s.send(k + 1, raw)
            if k == n_ticks // 2:
                rss["middle"] = sum(rss_kib(p) for p in server.pids)
        t_end = time.perf_counter()
        for s in streams:
            s.wait_answered(n_ticks + 1, DRAIN_TIMEOUT_S)
        shares = window.shares()
        hist.stop()
        rss["end"] = sum(rss_kib(p) for p in server.pids)
    finally:
        for s in streams:
            s.close()
    timed = sorted(x for s in streams for x in s.rtt_s if x[0] >= window.t0)
    rtts = [r for _t, r in timed]
    third = max(1, len(rtts) // 3)
    answered = sum(s.answered for s in streams)
    out = dict(rooms=rooms, participants=participants, streams=len(streams),
               workers=server.workers, seconds=round(t_end - t0, 1),
               batches=(n_ticks + 1) * len(streams), answered=answered, late_sends=late,
               server_errors=hist.errors, stream_errors=sum(s.error is not None for s in streams),
               **rtt_summary(rtts), **hist.summary(),
               # a growing backlog shows as a later round trip far above the early one
               rtt_first_third_p50_ms=round(float(np.median(rtts[:third])) * 1000, 2),
               rtt_last_third_p50_ms=round(float(np.median(rtts[-third:])) * 1000, 2),
               **{k: v for k, v in shares.items() if k.endswith("_share")},
               client_encode_ms_per_tick=round(1000 * encode_s / n_ticks, 3),
               rss_mib={k: round(v / 1024, 1) for k, v in rss.items()})
    return out


SMALL_STREAMS = 5
"""Streams of the small deployment: 50 rooms x 50 messages/s is 2500 messages/s, over the
server's default max_batches_per_s (1000 per stream); 5 streams carry 500/s each."""


def drive_per_room(server: Server, rooms: int, participants: int, seconds: float,
                   n_streams: int = SMALL_STREAMS, warmup_s: float = 1.0) -> dict:
    """A small deployment: one message per room per tick, the rooms spread over
    ``n_streams`` streams and their sends spread over the 20 ms tick in ``SUBTICKS`` groups
    (their media clocks are not aligned). 2500 messages/s is too many for the threaded
    client (a thread hop per message); this one is asyncio (grpc.aio), one loop."""
    return asyncio.run(_drive_per_room(server, rooms, participants, seconds, n_streams,
                                       warmup_s))


SUBTICKS = 10
"""Send groups per 20 ms tick in the small deployment (one every 2 ms)."""


async def _drive_per_room(server: Server, rooms: int, participants: int, seconds: float,
                          n_streams: int, warmup_s: float) -> dict:
    per = -(-rooms // n_streams)
    encoders = [TickEncoder(s * per, min(per, rooms - s * per), participants)
                for s in range(n_streams) if s * per < rooms]
    channels, calls, sent_at, rtt, answered = [], [], [], [], []
    for i, enc in enumerate(encoders):
        ch = grpc.aio.insecure_channel(server.target, options=[
            ("grpc.use_local_subchannel_pool", 1), ("speakerswitch.loadgen_stream", i)])
        channels.append(ch)
        call = ch.stream_stream(STREAM_METHOD, request_serializer=None,
                                response_deserializer=None)()
        calls.append(call)
        sent_at.append({})
        rtt.append([])
        answered.append(0)
        await call.write(enc.roster_batch(1, 0))
        await call.read()
        answered[i] = 1

    async def reader(i: int) -> None:
        while True:
            raw = await calls[i].read()
            if raw is grpc.aio.EOF:
                return
            now = time.perf_counter()
            t = sent_at[i].pop(response_batch_id(raw), None)
            if t is not None:
                rtt[i].append((t, now - t))
            answered[i] += 1

    readers = [asyncio.create_task(reader(i)) for i in range(len(calls))]
    hist = HistogramWindow(server.metrics_ports)
    n_ticks = int(seconds * 1000 / TICK_MS)
    warm_ticks = int(warmup_s * 1000 / TICK_MS)
    late = 0
    try:
        t0 = time.perf_counter()
        for k in range(1, n_ticks + 1):
            if k == warm_ticks:
                hist.start()
                window = CpuWindow(server.pids)
            first = 2 + (k - 1) * per
            msgs = [[(i, first + j, raw) for j, raw in enumerate(enc.per_room(first, k))]
                    for i, enc in enumerate(encoders)]
            flat = [m for group in zip(*msgs) for m in group]  # stream-interleaved
            flat += [m for group in msgs for m in group[len(msgs[-1]):]]
            step = -(-len(flat) // SUBTICKS)
            base = t0 + k * TICK_MS / 1000
            for g in range(SUBTICKS):
                due = base + g * TICK_MS / 1000 / SUBTICKS
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -TICK_MS / 1000:
                    late += 1
                for i, bid, raw in flat[g * step:(g + 1) * step]:
                    sent_at[i][bid] = time.perf_counter()
                    await calls[i].write(raw)
        t_end = time.perf_counter()
        for c in calls:
            await c.done_writing()
        await asyncio.wait(readers, timeout=DRAIN_TIMEOUT_S)  # a behind server: count what came
        shares = window.shares()
        hist.stop()
    finally:
        for r in readers:
            r.cancel()
        for ch in channels:
            await ch.close()
    timed = sorted((t, r) for per_stream in rtt for (t, r) in per_stream if t >= window.t0)
    rtts = [r for _, r in timed]
    third = max(1, len(rtts) // 3)
    return dict(rooms=rooms, participants=participants, streams=len(calls),
                rtt_first_third_p50_ms=round(1000 * float(np.median(rtts[:third] or [0])), 2),
                rtt_last_third_p50_ms=round(1000 * float(np.median(rtts[-third:] or [0])), 2),
                seconds=round(t_end - t0, 1), late_groups=late,
                messages=sum(1 + n_ticks * e.n_rooms for e in encoders),
                answered=sum(answered), server_errors=hist.errors,
                **rtt_summary(rtts), **hist.summary(),
                **{k: shares[k] for k in ("server_cpu_share", "client_cpu_share",
                                          "other_cpu_share")})


def drive_saturated(server: Server, rooms_per_stream: int, participants: int,
                    n_streams: int, seconds: float, window: int = 2,
                    warmup_s: float = 1.5) -> dict:
    """Throughput: every stream keeps ``window`` batches in flight (the next is sent when
    one is answered), as fast as the server answers; participant-frames per second over
    the measured window, with each worker's and the client's CPU share."""
    encoders = [TickEncoder(s * rooms_per_stream, rooms_per_stream, participants)
                for s in range(n_streams)]
    streams = open_balanced(server, n_streams, encoders)
    # the next batch is encoded on the reader thread when one is answered (the
    # timestamps must keep increasing, so it cannot be prepared far ahead)
    next_k = [2] * n_streams
    locks = [threading.Lock() for _ in streams]
    stop = threading.Event()

    def make_sender(i: int):
        def on_response(_bid: int) -> None:
            if stop.is_set():
                return
            with locks[i]:
                k = next_k[i]
                next_k[i] += 1
                raw = encoders[i].batch(k, k - 1)
            streams[i].send(k, raw)
        return on_response

    try:
        for i, s in enumerate(streams):
            s.on_response = make_sender(i)
            for _ in range(window):
                with locks[i]:
                    k = next_k[i]
                    next_k[i] += 1
                    raw = encoders[i].batch(k, k - 1)
                s.send(k, raw)
        time.sleep(warmup_s)
        n0 = [s.answered for s in streams]
        window = CpuWindow(server.pids)
        time.sleep(seconds)
        n1 = [s.answered for s in streams]
        shares = window.shares()
        stop.set()
        for s in streams:
            s.wait_answered(next_k[streams.index(s)] - 1, DRAIN_TIMEOUT_S)
    finally:
        stop.set()
        for s in streams:
            s.close()
    batches = sum(b - a for a, b in zip(n0, n1))
    wall = shares["wall_s"]
    pf = batches * rooms_per_stream * participants / wall
    return dict(workers=server.workers, streams=n_streams, rooms_per_stream=rooms_per_stream,
                participants=participants, seconds=round(wall, 1), batches=batches,
                participant_frames_per_s=round(pf),
                **{k: v for k, v in shares.items() if k.endswith("_share")},
                # throughput per CPU-second the workers actually got: what each worker
                # would do with a core of its own
                pf_per_worker_cpu_s=round(pf / max(1e-9, sum(shares["worker_cpu_s"]) / wall)),
                stream_errors=sum(s.error is not None for s in streams))
