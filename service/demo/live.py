"""``speakerswitch demo``: the service, its web viewer, and a bundled conversation streamed
through the real gRPC API in real time, as a media server would, so a newcomer can open
the room page, press play, hear who speaks and watch the feed switch.

The conversation (``data/``, built by ``service.demo.build``): four voices over 2.7
minutes, with interjections, a cough and a fan that must not switch, a camera turned on
mid-turn and one turned off. The media server's side is the replay's: ``levels_ticks``
and ``with_events`` make the ticks, ``Client.session`` sends them one per request every
20 ms; the server decides with the same engine as everything else. The page plays the
compressed mix in step with the room's media time (``/api/demo`` tells it where the
stream is). The conversation loops until stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import pathlib
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..tools import replay
from ..api import speakerswitch_pb2 as pb
from ..client import Client
from ..runtime.config import ServiceConfig
from ..runtime.web import DemoInfo

if TYPE_CHECKING:
    from ..runtime.server import RunningServer

log = logging.getLogger("speakerswitch.demo")

DATA = pathlib.Path(__file__).parent / "data"
TICK_MS = replay.WAV_FRAME_MS


@dataclass(frozen=True)
class Conversation:
    """The bundled conversation on disk."""
    levels_gz: pathlib.Path
    events: pathlib.Path
    audio: pathlib.Path
    script: dict

    @classmethod
    def bundled(cls, folder: pathlib.Path = DATA) -> "Conversation":
        return cls(folder / "levels.csv.gz", folder / "events.jsonl",
                   folder / "conversation.ogg",
                   json.loads((folder / "script.json").read_text()))

    @property
    def duration_ms(self) -> int:
        return int(self.script["duration_ms"])

    def ticks(self, room_id: str) -> list[pb.RoomTick]:
        """One loop of the conversation as a media server's ticks (levels and the camera
        events), through the replay's own readers."""
        with tempfile.TemporaryDirectory() as tmp:
            csv = pathlib.Path(tmp) / "levels.csv"
            with gzip.open(self.levels_gz, "rb") as src, open(csv, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return list(replay.with_events(replay.levels_ticks(csv, room_id),
                                           replay.read_events(self.events)))


class Streamer(threading.Thread):
    """A media server in a thread: streams the conversation to ``target`` paced by the wall
    clock (``speed`` x real time), looping (``loops`` 0: until stopped), one tick per
    request. Media time goes on increasing across loops, as a real room's does."""

    def __init__(self, target: str, conversation: Conversation, room_id: str = "demo",
                 speed: float = 1.0, loops: int = 0) -> None:
        super().__init__(name="demo-streamer", daemon=True)
        self.target, self.conversation, self.room_id = target, conversation, room_id
        self.speed, self.loops = speed, loops
        self.stopping = threading.Event()
        self.started_s: float | None = None
        self.events: list[pb.RoomEvent] = []
        self.rejected = 0
        self.error: BaseException | None = None

    def position_ms(self) -> int | None:
        """Where in the conversation the stream is now (what the page's audio should play)."""
        if self.started_s is None:
            return None
        elapsed = (time.monotonic() - self.started_s) * 1000 * self.speed
        return int(elapsed % self.conversation.duration_ms)

    def run(self) -> None:
        try:
            self._stream()
        except BaseException as e:  # reported by whoever joins us
            if not self.stopping.is_set():
                log.exception("demo stream failed")
                self.error = e

    def _stream(self) -> None:
        one_loop = self.conversation.ticks(self.room_id)
        period = self.conversation.duration_ms
        with Client(self.target) as client:
            client.wait_ready()
            with client.session() as session:
                self.started_s = time.monotonic()
                loop = 0
                while not self.stopping.is_set() and (not self.loops or loop < self.loops):
                    for template in one_loop:
                        tick = pb.RoomTick()
                        tick.CopyFrom(template)
                        tick.timestamp_ms += loop * period
                        due = self.started_s + tick.timestamp_ms / 1000 / self.speed
                        if self.stopping.wait(max(0.0, due - time.monotonic())):
                            return
                        response = session.send_ticks(tick)
                        self.rejected += len(response.rejections)
                        for r in response.rejections:
                            log.warning("tick at %d ms refused: %s: %s", tick.timestamp_ms,
                                        r.field, r.message)
                        self.events.extend(response.events)
                    loop += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def demo_config(host: str = "127.0.0.1", port: int = 50051, http_port: int = 8080,
                metrics_port: int = -1) -> ServiceConfig:
    """A local, unauthenticated service with the viewer on (the demo is for one machine)."""
    if http_port < 0:
        raise ValueError(f"http_port: the demo needs the web viewer (a port, or 0 for any), "
                         f"got {http_port}")
    return ServiceConfig(host=host, port=port, http_host=host, http_port=http_port,
                         metrics_port=metrics_port, insecure_no_auth=True).validate()


async def start_demo(config: ServiceConfig, speed: float = 1.0
                     ) -> tuple[RunningServer, Streamer]:
    """The service with its viewer, and the conversation streaming into it."""
    from ..runtime.server import start

    conversation = Conversation.bundled()
    room_id = conversation.script["room_id"]
    running = await start(config)
    assert running.web is not None, "demo_config turns the viewer on"
    streamer = Streamer(f"127.0.0.1:{running.port}", conversation, room_id, speed)
    running.web.demo = DemoInfo(room_id, conversation.audio, conversation.duration_ms,
                                streamer.position_ms, conversation.script["lines"])
    streamer.start()
    return running, streamer


async def stop_demo(running: RunningServer, streamer: Streamer) -> None:
    await asyncio.get_running_loop().run_in_executor(None, streamer.stop)
    await running.stop(0)


async def run(config: ServiceConfig, speed: float = 1.0, open_browser: bool = True) -> None:
    """Serve, stream the conversation, and wait for SIGINT/SIGTERM."""
    running, streamer = await start_demo(config, speed)
    assert running.web is not None
    url = f"http://{config.http_host}:{running.web.port}/rooms/{streamer.room_id}"
    print(f"\n  speakerswitch demo: open {url}\n  and press \u25b6 Play with sound. "
          f"Ctrl-C stops it.\n", flush=True)
    if open_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                         or os.uname().sysname == "Darwin"):
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await stop_demo(running, streamer)
