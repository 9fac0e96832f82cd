"""The gRPC server: Stream, Watch and GetRoom over one RoomRegistry, plus health checking,
reflection and the Prometheus endpoint."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc
from .config import ServiceConfig
from .metrics import Metrics
from .rooms import RoomRegistry

log = logging.getLogger("speakerswitch.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeakerSwitch"].full_name


class _WatchQueue:
    """A bounded queue of one Watch subscriber, fed synchronously by the registry."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[pb.RoomEvent | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def __call__(self, event: pb.RoomEvent) -> bool:
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            return False

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.overflowed = True


class SpeakerSwitchService(pb_grpc.SpeakerSwitchServicer):
    def __init__(self, registry: RoomRegistry, metrics: Metrics, config: ServiceConfig) -> None:
        self.registry = registry
        self.metrics = metrics
        self.config = config

    async def Stream(self, request_iterator, context):  # noqa: N802 (gRPC naming)
        m = self.metrics
        m.streams.inc()
        try:
            async for request in request_iterator:
                t0 = time.perf_counter()
                try:
                    response = self.registry.process(request, time.monotonic())
                except Exception:  # a bug must not take the server down with it
                    log.exception("internal error processing batch %d", request.batch_id)
                    m.errors.labels("INTERNAL").inc()
                    await context.abort(grpc.StatusCode.INTERNAL,
                                        f"internal error processing batch {request.batch_id}")
                yield response
                m.processing_latency.observe(time.perf_counter() - t0)
        finally:
            m.streams.dec()

    async def Watch(self, request, context):  # noqa: N802
        if not request.room_id:
            self.metrics.errors.labels("INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "room_id: must not be empty")
        q = _WatchQueue(self.config.watch_queue_events)
        snap = self.registry.watch(request.room_id, q)
        if snap is None:
            if not request.wait_for_room:
                self.metrics.errors.labels("NOT_FOUND").inc()
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"room_id: no room {request.room_id!r}")
            created = asyncio.Event()
            self.registry.when_created(request.room_id, created.set)
            try:
                await created.wait()
            finally:  # a watcher that gives up waiting leaves nothing behind
                self.registry.cancel_when_created(request.room_id, created.set)
            snap = self.registry.watch(request.room_id, q)
        self.metrics.watchers.inc()
        try:
            yield pb.RoomEvent(room_id=request.room_id, sequence=0,
                               timestamp_ms=snap.timestamp_ms, snapshot=snap)
            while True:
                event = await q.queue.get()
                if event is None:
                    return  # the room was dropped
                yield event
                if q.overflowed and q.queue.empty():
                    break
            self.metrics.errors.labels("RESOURCE_EXHAUSTED").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"watch of room {request.room_id!r} fell more than "
                                f"{self.config.watch_queue_events} events behind; resubscribe")
        finally:
            self.registry.unwatch(request.room_id, q)
            self.metrics.watchers.dec()

    async def GetRoom(self, request, context):  # noqa: N802
        if not request.room_id:
            self.metrics.errors.labels("INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "room_id: must not be empty")
        state = self.registry.room_state(request.room_id)
        if state is None:
            self.metrics.errors.labels("NOT_FOUND").inc()
            await context.abort(grpc.StatusCode.NOT_FOUND, f"room_id: no room {request.room_id!r}")
        return state


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    registry: RoomRegistry
    metrics: Metrics
    health: health.aio.HealthServicer
    _http: object | None = None
    _gc_task: asyncio.Task | None = None

    async def stop(self, grace_s: float | None = None) -> None:
        await self.health.enter_graceful_shutdown()
        if self._gc_task is not None:
            self._gc_task.cancel()
        await self.server.stop(grace_s)
        if self._http is not None:
            self._http.shutdown()


async def _collect_idle_rooms(registry: RoomRegistry, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        registry.collect_idle(time.monotonic())


async def start(config: ServiceConfig) -> RunningServer:
    """Start serving on the configured ports; returns once the ports are bound."""
    metrics = Metrics()
    registry = RoomRegistry(config, metrics)
    opts = [("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=opts)
    pb_grpc.add_SpeakerSwitchServicer_to_server(
        SpeakerSwitchService(registry, metrics, config), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"cannot bind gRPC to {config.host}:{config.port}")
    http = None
    metrics_port = None
    if config.metrics_port >= 0:
        http, _thread = start_http_server(config.metrics_port, config.metrics_host,
                                          registry=metrics.registry)
        metrics_port = http.server_port
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    gc_task = asyncio.create_task(_collect_idle_rooms(registry, config.gc_interval_s))
    log.info("serving gRPC on %s:%d, metrics on %s", config.host, port,
             f"http://{config.metrics_host}:{metrics_port}/metrics" if metrics_port else "off")
    return RunningServer(server, port, metrics_port, registry, metrics, health_servicer,
                         http, gc_task)


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
