"""A bare grpc.aio server speaking speakerswitch's Stream: the framework's own cost, the
floor under any figure of ours (``make bench-load`` runs it beside the real server).

Each request is answered with a StreamResponse carrying only its batch_id, read from the
raw bytes (no protobuf decode), and its wall time observed in a histogram of the real
server's name, so the load client measures both alike. Takes the flags the load client
gives ``speakerswitch serve`` (``--port``, ``--metrics-port``; others are ignored), and
what benchmarks/per_room_ab.py compares the floor under: ``--loop uvloop`` (if
installed), ``--handler read-write`` (``context.read``/``context.write`` instead of
``async for``/``yield``), ``--option NAME=VALUE`` (a server channel argument; an integer
value is passed as one), repeatable.
"""
from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from service.runtime.metrics import PROCESSING_BUCKETS_S


def batch_id_prefix(raw: bytes) -> bytes:
    """The ``batch_id`` field (1, varint) a request starts with, as the response's bytes."""
    if raw[:1] != b"\x08":
        return b""
    end = 1
    while end < len(raw) and raw[end] & 0x80:
        end += 1
    return raw[:end + 1]


def channel_option(text: str) -> tuple[str, int | str]:
    """``NAME=VALUE`` as a grpc server option; an integer value is passed as one."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--option {text!r}: NAME=VALUE")
    try:
        return name, int(value)
    except ValueError:
        return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--handler", choices=("async-for", "read-write"), default="async-for")
    ap.add_argument("--option", type=channel_option, action="append", default=[])
    return ap.parse_known_args(argv)[0]


async def main(a: argparse.Namespace) -> None:
    registry = CollectorRegistry()
    latency = Histogram("speakerswitch_processing_latency_seconds", "echo",
                        buckets=PROCESSING_BUCKETS_S, registry=registry)
    for name in ("speakerswitch_errors", "speakerswitch_frames", "speakerswitch_switches"):
        Counter(name, "echo", registry=registry)
    start_http_server(a.metrics_port, "127.0.0.1", registry=registry)

    async def stream(requests, context):
        async for raw in requests:
            t0 = time.perf_counter()
            yield batch_id_prefix(raw)
            latency.observe(time.perf_counter() - t0)

    async def stream_read_write(requests, context):
        while (raw := await context.read()) is not grpc.aio.EOF:
            t0 = time.perf_counter()
            await context.write(batch_id_prefix(raw))
            latency.observe(time.perf_counter() - t0)

    handler = grpc.stream_stream_rpc_method_handler(
        stream if a.handler == "async-for" else stream_read_write,
        request_deserializer=None, response_serializer=None)
    server = grpc.aio.server(options=a.option)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "speakerswitch.v1.SpeakerSwitch", {"Stream": handler})])
    server.add_insecure_port(f"127.0.0.1:{a.port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop  # not a dependency: pip install uvloop to compare

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(args))
