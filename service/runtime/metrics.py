"""Prometheus metrics of one server. Labels are bounded enums (reason, code, kind): never
room or participant ids, whose cardinality a client controls."""
from __future__ import annotations

import asyncio
import gzip
import logging
import os
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from prometheus_client import (PROCESS_COLLECTOR, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector)
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("speakerswitch.metrics")

# Media-time delay from a speaker's detected speech onset to the switch: what a viewer
# feels. Turn changes should land in the 0.2-0.8 s buckets.
SWITCH_DELAY_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25,
                          1.5, 2.0, 3.0, 5.0, 10.0)
# RFC 3550 interarrival jitter of an RTP source: a LAN has under 1 ms; the ingest waits
# rtp_jitter_ms (60 ms by default) for late packets, so sources beyond it lose packets as late.
RTP_JITTER_BUCKETS_S = (5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 4e-2, 6e-2, 0.1, 0.2, 0.5)
# Wall time from receiving a request to sending its decisions: the service's own cost.
# Fine steps from 1 to 30 ms, where the targets lie (p99 <= 2 ms for a small
# deployment, <= 10 ms for a 2000-room batch) and a 20 ms tick's budget ends, so that a
# quantile read from them (benchmarks/loadgen.py, histogram_quantile) is within ~1 ms;
# a superset of the earlier buckets, so queries on those keep working.
PROCESSING_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1.25e-3, 1.5e-3, 1.75e-3,
                        2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3, 9e-3, 1e-2,
                        1.2e-2, 1.4e-2, 1.6e-2, 1.8e-2, 2e-2, 2.5e-2, 3e-2, 4e-2, 5e-2,
                        0.1, 0.25, 1.0)


SWITCH_REASONS = ("FIRST_SPEAKER", "DOMINANT_SPEAKER", "VIDEO_ON", "VIDEO_OFF", "LEFT", "PINNED",
                  "UNPINNED")
ERROR_CODES = ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAUTHENTICATED",
               "NOT_FOUND", "OUT_OF_RANGE", "UNAVAILABLE", "INTERNAL")
REDIS_OPS = ("publish", "restore", "watch")
LIMITS = ("max_ticks_per_batch", "max_entries_per_batch", "max_events_per_tick", "max_rooms",
          "max_rooms_per_tenant", "max_participants_per_room", "max_participants",
          "max_participants_per_tenant", "max_watchers_per_tenant", "watch_queue_events",
          "watch_bytes_per_tenant")
"""The configured limits a tick or batch can be refused by (ServiceConfig field names)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("speakerswitch")
    except metadata.PackageNotFoundError:
        return "unknown"


def _kernel() -> str:
    from dsp.engine import KERNEL

    return KERNEL


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if registry is None and PROCESS_COLLECTOR is not None:
            # process_* (CPU, RSS, start time): what restart and saturation alerts read
            ProcessCollector(registry=r)
        self.switch_delay = Histogram(
            "speakerswitch_switch_delay_seconds",
            "Media time from the new speaker's detected speech onset to the switch decision",
            buckets=SWITCH_DELAY_BUCKETS_S, registry=r)
        self.processing_latency = Histogram(
            "speakerswitch_processing_latency_seconds",
            "Wall time from receipt of a request to emission of its decisions",
            buckets=PROCESSING_BUCKETS_S, registry=r)
        self.frames = Counter("speakerswitch_frames", "Participant audio frames processed",
                              ["kind"], registry=r)
        self.ticks = Counter("speakerswitch_ticks", "Room ticks processed", registry=r)
        self.batches = Counter("speakerswitch_batches", "Stream requests processed", registry=r)
        self.limit_rejections = Counter(
            "speakerswitch_limit_rejections",
            "Ticks and calls refused by a configured limit, by the limit's name",
            ["limit"], registry=r)
        self.drains = Counter(
            "speakerswitch_drains",
            "Group commits: the stream requests waiting at once, stepped together "
            "(batches / drains = how many streams share a step)", registry=r)
        self.switches = Counter("speakerswitch_switches", "Main video feed switches",
                                ["reason"], registry=r)
        self.rtp_packets = Counter(
            "speakerswitch_rtp_packets",
            "RTP ingest datagrams by outcome: ok, rtcp, unknown_ssrc, late, reordered, "
            "duplicate, reanchored, no_level, opus_error, overflow, or why it was not RTP",
            ["outcome"],
            registry=r)
        self.rtp_lost = Counter(
            "speakerswitch_rtp_lost_packets",
            "RTP packets of mapped sources never received (by their sequence numbers)",
            registry=r)
        self.rtp_jitter = Histogram(
            "speakerswitch_rtp_jitter_seconds",
            "RFC 3550 interarrival jitter of each RTP source, observed once a second per "
            "source that sent packets (a distribution over sources: no SSRC label)",
            buckets=RTP_JITTER_BUCKETS_S, registry=r)
        self.rtp_bytes = Counter("speakerswitch_rtp_bytes", "RTP ingest bytes received",
                                 registry=r)
        self.errors = Counter("speakerswitch_errors", "Rejected ticks and failed calls",
                              ["code"], registry=r)
        self.rooms = Gauge("speakerswitch_rooms", "Rooms in memory", registry=r)
        self.participants = Gauge("speakerswitch_participants", "Participants in memory",
                                  registry=r)
        self.streams = Gauge("speakerswitch_streams", "Open media-server streams", registry=r)
        self.build_info = Gauge(
            "speakerswitch_build_info",
            "1, labelled with the version and the engine's level path (c or numpy): joined "
            "on instance, it tells process_* series of speakerswitch from others'",
            ["version", "kernel"], registry=r)
        self.build_info.labels(_version(), _kernel()).set(1)
        self.watchers = Gauge("speakerswitch_watchers", "Open Watch subscriptions", registry=r)
        self.rooms_restored = Counter(
            "speakerswitch_rooms_restored",
            "Rooms taken over from Redis state (another replica served them before)",
            registry=r)
        self.redis_errors = Counter("speakerswitch_redis_errors", "Failed Redis operations",
                                    ["op"], registry=r)
        # every label value exists from the start, at 0, so rate() and alerts see a series
        # before the first event of its kind
        for kind in ("level", "pcm"):
            self.frames.labels(kind)
        for reason in SWITCH_REASONS:
            self.switches.labels(reason)
        for code in ERROR_CODES:
            self.errors.labels(code)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for limit in LIMITS:
            self.limit_rejections.labels(limit)


class LogLimiter:
    """Repeated warnings of one kind (denied calls, malformed requests, dropped watchers)
    at most ``burst`` lines per ``interval_s``; the next line after a quiet spell says how
    many were left out, so a flood of bad calls cannot fill the disk through the log."""

    def __init__(self, interval_s: float = 10.0, burst: int = 20, clock=time.monotonic) -> None:
        self.interval_s, self.burst, self.clock = interval_s, burst, clock
        self._windows: dict[str, list] = {}  # kind -> [window start, lines, left out]

    def warning(self, logger: logging.Logger, kind: str, msg: str, *args) -> bool:
        """Log ``msg % args`` at WARNING unless ``kind`` is over its rate; True if logged."""
        now = self.clock()
        w = self._windows.get(kind)
        if w is None or now - w[0] >= self.interval_s:
            left_out = w[2] if w is not None else 0
            self._windows[kind] = [now, 1, 0]
            if left_out:
                msg += " (%d more like it in the last %.0f s were not logged)"
                args = (*args, left_out, now - w[0])
            logger.warning(msg, *args, stacklevel=2)
            return True
        if w[1] < self.burst:
            w[1] += 1
            logger.warning(msg, *args, stacklevel=2)
            return True
        w[2] += 1
        return False


METRICS_HEADER_TIMEOUT_S = 5.0
"""A connection to the metrics port that has not sent its request headers this long after
connecting is closed (a scraper sends them at once)."""
METRICS_MAX_HEADER_BYTES = 16 * 1024
METRICS_MAX_CONNECTIONS = 64
"""Connections to the metrics port at once; the next one closes the oldest still waiting
for its request (a scraper uses one connection at a time, and sends its request at once)."""


class MetricsServer:
    """``GET /metrics`` (any path, as prometheus_client's server) served on the event loop:
    no thread per connection. ``GET /healthz`` answers 200 ``SERVING`` while ``serving()``
    says so, else 503 ``NOT_SERVING`` (draining): plain HTTP, so container and Kubernetes
    probes work when gRPC is TLS or mutual TLS, which their gRPC probes cannot speak. Each connection answers one request and closes; headers must
    arrive within METRICS_HEADER_TIMEOUT_S; at most METRICS_MAX_CONNECTIONS are open at
    once. Content negotiation (OpenMetrics), gzip and ``?name[]=`` as prometheus_client."""

    def __init__(self, registry: CollectorRegistry,
                 serving: Callable[[], bool] | None = None) -> None:
        self.registry = registry
        self.serving = serving
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.StreamWriter, bool] = {}
        """Open connections, oldest first: True while they wait for their request."""

    async def start(self, host: str, port: int) -> int:
        try:
            self._server = await asyncio.start_server(
                self._serve, host, port, limit=METRICS_MAX_HEADER_BYTES, reuse_address=True)
        except OSError as e:  # the errno alone, as prometheus_client's server said it
            raise OSError(e.errno, os.strerror(e.errno) if e.errno else str(e)) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.transport.abort()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= METRICS_MAX_CONNECTIONS:
            idle = next((w for w, waiting in self._conns.items() if waiting), None)
            if idle is None:
                writer.transport.abort()
                return
            idle.transport.abort()
            self._conns.pop(idle, None)
        self._conns[writer] = True
        try:
            async with asyncio.timeout(METRICS_HEADER_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            self._conns[writer] = False
            writer.write(self._response(head))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        except Exception:  # never let a scrape take anything down with it
            log.exception("metrics request failed")
        finally:
            self._conns.pop(writer, None)
            writer.close()

    def _response(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _http(400, "text/plain", b"bad request\n")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _http(405, "text/plain", b"GET only\n", {"Allow": "GET, HEAD"})
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        if url.path == "/favicon.ico":
            return _http(200, "text/plain", b"")
        if url.path == "/healthz" and self.serving is not None:
            up = self.serving()
            body = b"SERVING\n" if up else b"NOT_SERVING\n"
            return _http(200 if up else 503, "text/plain", b"" if method == "HEAD" else body,
                         length=len(body))
        registry = self.registry
        names = parse_qs(url.query).get("name[]")
        if names:
            registry = registry.restricted_registry(names)
        encoder, content_type = choose_encoder(headers.get("accept"))
        body = encoder(registry)
        extra = {}
        if "gzip" in headers.get("accept-encoding", ""):
            body, extra = gzip.compress(body), {"Content-Encoding": "gzip"}
        return _http(200, content_type, b"" if method == "HEAD" else body, extra,
                     length=len(body))


_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed",
            503: "Service Unavailable"}


def _http(status: int, content_type: str, body: bytes, headers: dict | None = None,
          length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
