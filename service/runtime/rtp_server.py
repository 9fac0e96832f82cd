"""The RTP ingest's socket: datagrams from media servers, read on the event loop and handed
to service/runtime/rtp_ingest.py in batches; the ticks it closes go through the group commit like a
Stream batch, so their decisions reach Watch, GetRoom and the viewer as any other."""
from __future__ import annotations

import asyncio
import logging
import time

from .group_commit import GroupCommit
from .metrics import LogLimiter, Metrics
from .rooms import Batch
from .rtp_ingest import RtpIngest

log = logging.getLogger("speakerswitch.rtp")

FLUSH_S = 0.005
"""How often received datagrams are parsed and closed ticks stepped: a batch of a few
hundred datagrams at 50,000 a second, and at most this much added to a decision's delay."""
MAX_PENDING_DATAGRAMS = 100_000
"""Datagrams held between two flushes at most (2 s at 50,000 a second): a flood beyond it
is dropped and counted, not queued without bound."""


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, clock) -> None:
        self.pending: list[bytes] = []
        self.arrivals: list[float] = []
        """When each pending datagram arrived (the flush is every FLUSH_S: its time would
        add up to 5 ms of jitter that the network did not)."""
        self.senders: list = []
        """The address each came from, for the sources mapped by sender (source_port)."""
        self.dropped = 0
        self.clock = clock

    def datagram_received(self, data: bytes, addr) -> None:
        if len(self.pending) < MAX_PENDING_DATAGRAMS:
            self.pending.append(data)
            self.arrivals.append(self.clock())
            self.senders.append(addr)
        else:
            self.dropped += 1


class RtpServer:
    def __init__(self, ingest: RtpIngest, group_commit: GroupCommit, metrics: Metrics,
                 clock=time.monotonic) -> None:
        self.ingest = ingest
        self.group_commit = group_commit
        self.metrics = metrics
        self.clock = clock
        self.port = 0
        self._receiver = _Receiver(clock)
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None
        self._counted: dict[str, int] = {}
        self._log = LogLimiter()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: self._receiver, local_addr=(host.strip("[]"), port), reuse_port=False)
        except OSError as e:
            raise OSError(e.errno, f"rtp_port: cannot bind {host}:{port}: {e.strerror}") \
                from None
        self.port = self._transport.get_extra_info("sockname")[1]
        self._task = asyncio.create_task(self._run())
        return self.port

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception:  # a bug must not stop the ingest for every room
                log.exception("RTP ingest: internal error (the batch is dropped)")

    async def flush(self) -> None:
        """Parse what arrived, step the ticks that closed, update the metrics."""
        r = self._receiver
        datagrams, r.pending = r.pending, []
        arrivals, r.arrivals = r.arrivals, []
        senders, r.senders = r.senders, []
        now = self.clock()
        self.ingest.receive(datagrams, now, arrivals, senders)
        for tenant, request in self.ingest.closed(now).items():
            response = await self.group_commit.process(Batch(request, now, tenant))
            for rej in response.rejections:
                self._log.warning(log, "rejected", "RTP ingest: room %s tick refused: %s: %s",
                                  rej.room_id, rej.field, rej.message)
        self._count()

    def _count(self) -> None:
        m = self.metrics
        counts = dict(self.ingest.counts)
        counts["overflow"] = self._receiver.dropped
        for outcome, n in counts.items():
            new = n - self._counted.get(outcome, 0)
            if new:
                m.rtp_packets.labels(outcome).inc(new)
        self._counted = counts
        new_bytes = self.ingest.bytes - self._counted.get("_bytes", 0)
        if new_bytes:
            m.rtp_bytes.inc(new_bytes)
        self._counted["_bytes"] = self.ingest.bytes
        new_lost = self.ingest.lost - self._counted.get("_lost", 0)
        if new_lost:
            m.rtp_lost.inc(new_lost)
        self._counted["_lost"] = self.ingest.lost
        samples, self.ingest.jitter_samples = self.ingest.jitter_samples, []
        for jitter_s in samples:
            m.rtp_jitter.observe(jitter_s)
