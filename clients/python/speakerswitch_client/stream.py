"""One media-server stream that reconnects by itself.

Requests go out in order with at most ``max_in_flight`` unanswered (``send`` waits for a
slot: that is the backpressure that reaches ``push_level``). The server answers every
request, in order; a request still unanswered when the stream breaks is sent again on the
next one, so each request gets exactly one answer delivered (a request the old server had
processed comes back refused for its timestamps, without decisions, rather than twice).
``retries`` bounds the reconnects in a row (the blocking sessions give up, as they always
did; the asyncio client tries for ever).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable

import grpc

from .api import speakerswitch_pb2 as pb
from .api import speakerswitch_pb2_grpc as pb_grpc
from .batching import Built
from .errors import RETRYABLE, SpeakerSwitchError, from_rpc

log = logging.getLogger("speakerswitch_client")
_CLOSE = object()
_BROKEN = (grpc.RpcError, EOFError, asyncio.InvalidStateError)
"""How a stream that broke shows (InvalidStateError: written to after the server ended it)."""


class Backoff:
    """Exponential backoff with jitter: ``initial_s`` doubling up to ``max_s``."""

    def __init__(self, initial_s: float = 0.05, max_s: float = 2.0) -> None:
        self.initial_s, self.max_s = initial_s, max_s

    def delay(self, attempt: int) -> float:
        # jitter: replicas restarted together are not hit by every client at once
        return min(self.max_s, self.initial_s * 2 ** attempt) * random.uniform(0.5, 1.0)


class Link:
    def __init__(self, stub: pb_grpc.SpeakerSwitchStub, metadata: Callable[[], tuple],
                 on_response: Callable[[pb.StreamResponse], Awaitable[None]],
                 max_in_flight: float = 4, backoff: Backoff | None = None,
                 retries: int | None = None) -> None:
        self.stub, self.metadata, self.on_response = stub, metadata, on_response
        self.max_in_flight, self.retries = max_in_flight, retries
        self.backoff = backoff or Backoff()
        self.unacked: collections.deque[Built] = collections.deque()
        self.error: SpeakerSwitchError | None = None
        self.requests = self.responses = self.reconnects = 0
        self.rtt_s: collections.deque[float] = collections.deque(maxlen=4096)
        """Recent round trips: queued to the stream -> answered (with the waits between)."""
        self._batch_id = 0
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._window = asyncio.Condition()
        self._closing = False
        self._task = asyncio.create_task(self._run())

    async def send(self, built: Built) -> None:
        """Queue a request; waits while ``max_in_flight`` are unanswered."""
        async with self._window:
            await self._window.wait_for(
                lambda: self.error is not None or len(self.unacked) < self.max_in_flight)
        if self.error is not None:
            raise self.error
        if not built.request.batch_id:  # a caller's own batch ids are kept
            self._batch_id += 1
            built.request.batch_id = self._batch_id
        self.unacked.append(built)
        self.requests += 1
        built.sent_s = time.perf_counter()
        self._outbox.put_nowait(built)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, wait for its answers, end the stream."""
        self._closing = True
        self._outbox.put_nowait(_CLOSE)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except Exception as e:  # unanswered requests are given up: it is closing
            log.debug("stream closed on %r", e)
        finally:
            self._task.cancel()
        if self.unacked:
            log.warning("closed with %d requests unanswered", len(self.unacked))
            self._answer_all(self.error or SpeakerSwitchError(
                grpc.StatusCode.CANCELLED, "the stream was closed before the answer came"))

    async def _run(self) -> None:
        attempt = 0
        while True:
            call = self.stub.Stream(metadata=self.metadata())
            answered = self.responses
            # everything unanswered goes again, in order, on the new stream
            self._outbox = asyncio.Queue()
            for built in self.unacked:
                self._outbox.put_nowait(built)
            if self._closing:
                self._outbox.put_nowait(_CLOSE)
            reader = asyncio.create_task(self._read(call))
            writer = asyncio.create_task(self._write(call))
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_EXCEPTION)
                if writer.done() and writer.exception() is None and not reader.done():
                    await asyncio.wait({reader})  # closing: the last answers
                failure = next((t.exception() for t in (reader, writer)
                                if t.done() and t.exception() is not None), None)
            finally:
                reader.cancel()
                writer.cancel()
                call.cancel()
            if self._closing:  # closed, or broken while closing: nothing to wait for
                return
            if isinstance(failure, grpc.RpcError) and failure.code() not in RETRYABLE:
                self._fail(from_rpc(failure))
                return
            if failure is not None and not isinstance(failure, _BROKEN):
                self._fail(SpeakerSwitchError(grpc.StatusCode.INTERNAL, repr(failure)))
                raise failure
            if self.responses > answered:
                attempt = 0  # it worked for a while: start the backoff over
            if self.retries is not None and attempt >= self.retries:
                self._fail(from_rpc(failure) if isinstance(failure, grpc.RpcError) else
                           SpeakerSwitchError(grpc.StatusCode.UNAVAILABLE,
                                              f"the stream broke: {failure!r}"))
                return
            self.reconnects += 1
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1

    def _answer_all(self, error: Exception) -> None:
        for built in self.unacked:
            if built.answer is not None and not built.answer.done():
                built.answer.set_exception(error)

    def _fail(self, error: SpeakerSwitchError) -> None:
        self.error = error
        self._answer_all(error)

        async def wake() -> None:
            async with self._window:
                self._window.notify_all()
        asyncio.get_running_loop().create_task(wake())

    async def _write(self, call) -> None:
        rosters: dict[str, tuple[str, ...]] = {}  # what this server holds per room
        while True:
            built = await self._outbox.get()
            if built is _CLOSE:
                await call.done_writing()
                return
            for tick, roster in zip(built.request.ticks, built.rosters):
                if roster is not None and rosters.get(tick.room_id) is not roster:
                    # LevelVector rosters are sticky per room on the server: sent when
                    # changed, and again to a new stream (the server may be a new one)
                    del tick.levels.roster[:]
                    tick.levels.roster.extend(roster)
                    rosters[tick.room_id] = roster
            await call.write(built.request)

    async def _read(self, call) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                if self._closing and not self.unacked:
                    return
                raise EOFError("the server ended the stream")
            built = self.unacked.popleft()
            if response.batch_id != built.request.batch_id:
                raise SpeakerSwitchError(grpc.StatusCode.INTERNAL,
                                         f"answer to batch {response.batch_id} where "
                                         f"{built.request.batch_id} was expected")
            self.responses += 1
            self.rtt_s.append(time.perf_counter() - built.sent_s)
            async with self._window:
                self._window.notify_all()
            await self.on_response(response)
            if built.answer is not None and not built.answer.done():
                built.answer.set_result(response)
