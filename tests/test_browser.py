"""The web viewer in a real browser: headless Debian Chromium driven by Playwright, against
a real server on loopback while scripted conversations stream through gRPC.

`make test` installs Debian's chromium when it can (root + apt-get); without it these
tests skip and say so. Playwright's own browser download is never used: we launch
/usr/bin/chromium (``executable_path``) with a fresh profile (Playwright makes a new
temporary user-data dir per launch). Screenshots go to ``.artifacts/browser/`` (or
$SPEAKERSWITCH_ARTIFACTS).
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import threading

import pytest

from service.demo import live as demo
from service.api import speakerswitch_pb2 as pb
from service.client import Client

from conftest import ServerThread, script_levels, test_config

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
expect = playwright_api.expect

CHROMIUM = os.environ.get("SPEAKERSWITCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = pathlib.Path(os.environ.get(
    "SPEAKERSWITCH_ARTIFACTS", pathlib.Path(__file__).resolve().parent.parent / ".artifacts"
)) / "browser"
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}
ABC = ["a", "b", "c"]
ET = pb.ParticipantEventType


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when "
                    "run as root with apt-get; install it (apt-get install chromium) or set "
                    "SPEAKERSWITCH_CHROMIUM to run the browser tests")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page in a fresh browser context, recording console errors and page errors."""

    def __init__(self, browser, viewport: dict) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def shot(self, name: str) -> pathlib.Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def desktop(browser):
    p = Page(browser, DESKTOP)
    yield p
    p.close()


@pytest.fixture
def phone(browser):
    p = Page(browser, PHONE)
    yield p
    p.close()


class Room:
    """A media server's stream for one room: turns of speech, in media time."""

    def __init__(self, server: ServerThread, room: str) -> None:
        self.room, self.t = room, 0
        self.client = Client(server.target)
        self.session = self.client.session()
        self.last_sequence = 0

    def talk(self, who: str, ms: int = 1500, then_quiet_ms: int = 500,
             events: tuple = ()) -> list[pb.RoomEvent]:
        ticks = script_levels(self.room, [(who, self.t, self.t + ms)], ABC, ms + then_quiet_ms,
                              start_ms=self.t)
        for pid, kind in events:
            ticks[0].events.add(participant_id=pid, type=kind)
        resp = self.session.send(pb.StreamRequest(ticks=ticks))
        assert not resp.rejections, resp.rejections
        self.t += ms + then_quiet_ms
        if resp.events:
            self.last_sequence = resp.events[-1].sequence
        return list(resp.events)

    def close(self) -> None:
        self.session.close()
        self.client.close()


def caught_up(page, sequence: int) -> None:
    """Wait until the page has applied every event up to ``sequence``."""
    page.wait_for_function("n => window.__viewer && window.__viewer.seq >= n", arg=sequence)


def viewer_state(page) -> dict:
    return page.evaluate("({shown: window.__viewer.shownHistory, gaps: window.__viewer.gaps,"
                         " seq: window.__viewer.seq})")


def assert_usable(page) -> None:
    """Nothing overflows sideways; the main tile and every tile's buttons are on screen."""
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator("#main-tile").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["height"] > 100
    for button in page.locator("#tiles button").all():
        b = button.bounding_box()
        assert b is not None and b["width"] >= 30 and b["height"] >= 20


def test_main_tile_follows_each_turn_and_never_shows_a_camera_off_speaker(desktop):
    page = desktop.page
    with ServerThread(test_config(http_port=0)) as server:
        base = f"http://127.0.0.1:{server.running.web.port}"
        page.goto(f"{base}/rooms/talk")  # before the room exists: the page waits for it
        expect(page.locator("#status")).to_have_attribute("data-state", "waiting")
        room = Room(server, "talk")
        main = page.locator("#main-tile")
        room.talk("a", events=[("c", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)])
        expect(main).to_have_attribute("data-speaker", "a")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        room.talk("b")
        expect(main).to_have_attribute("data-speaker", "b")
        # c holds the floor with its camera off: the feed stays, the badge says who talks
        room.talk("c", ms=2500)
        expect(page.locator("#floor-badge")).to_be_visible()
        expect(page.locator("#floor-badge")).to_have_text("c is speaking · camera off")
        caught_up(page, room.last_sequence)
        expect(main).to_have_attribute("data-speaker", "b")
        expect(page.locator('[data-participant="c"] .flags')).to_have_text("camera off")
        room.talk("a")
        expect(main).to_have_attribute("data-speaker", "a")
        caught_up(page, room.last_sequence)
        assert_usable(page)
        desktop.shot("desktop-turns")
        # the shown speaker's camera goes off from the page: the feed moves at once
        page.locator('[data-participant="a"] button.cam').click()
        expect(main).to_have_attribute("data-speaker", "b")
        expect(page.locator('[data-participant="a"] .flags')).to_have_text("camera off")
        expect(page.locator("#switches li").first).to_contain_text("a → b VIDEO_OFF")
        state = viewer_state(page)
        # the page may wake between two steps of the first batch (a drain lets other calls
        # in every few ms), so its snapshot may come before the first switch: nobody shown
        shown = state["shown"][1:] if state["shown"][:1] == [""] else state["shown"]
        assert shown == ["a", "b", "a", "b"]
        assert "c" not in state["shown"] and state["gaps"] == 0
        room.close()
    assert desktop.errors == []


def test_rooms_list_then_pin_moves_the_main_tile_and_holds_it_on_a_phone(phone):
    page = phone.page
    with ServerThread(test_config(http_port=0)) as server:
        base = f"http://127.0.0.1:{server.running.web.port}"
        room = Room(server, "standup")
        room.talk("a")
        room.talk("b")
        page.goto(f"{base}/")
        row = page.locator('#rooms tr[data-room="standup"]')
        expect(row).to_contain_text("standup")
        expect(row.locator("td").nth(1)).to_have_text("3")
        expect(row.locator("td").nth(2)).to_have_text("b")
        phone.shot("phone-rooms")
        row.locator("a").click()
        page.wait_for_url(f"{base}/rooms/standup")
        main = page.locator("#main-tile")
        expect(main).to_have_attribute("data-speaker", "b")
        page.locator('[data-participant="a"] button.pin').click()
        expect(main).to_have_attribute("data-speaker", "a")
        expect(page.locator("#main-pinned")).to_be_visible()
        expect(page.locator('[data-participant="a"] button.pin')).to_have_text("Unpin")
        room.talk("c", ms=3000)  # a full turn of c: the pin holds
        caught_up(page, room.last_sequence)
        expect(main).to_have_attribute("data-speaker", "a")
        assert_usable(page)
        phone.shot("phone-pinned")
        page.locator('[data-participant="a"] button.pin').click()  # unpin: straight to c
        expect(main).to_have_attribute("data-speaker", "c")
        expect(page.locator("#main-pinned")).to_be_hidden()
        state = viewer_state(page)
        assert state["shown"] == ["b", "a", "c"] and state["gaps"] == 0
        room.close()
    assert phone.errors == []


def test_the_page_recovers_after_the_server_restarts(desktop):
    page = desktop.page
    with ServerThread(test_config(http_port=0)) as first:
        port = first.running.web.port
        room = Room(first, "phoenix")
        room.talk("a")
        page.goto(f"http://127.0.0.1:{port}/rooms/phoenix")
        expect(page.locator("#main-tile")).to_have_attribute("data-speaker", "a")
        room.close()
    expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    with ServerThread(test_config(http_port=port)) as second:
        # the room starts over in the new process (sequence 1 again): the page's
        # Last-Event-ID is past its end, so it gets a snapshot and starts over too
        room = Room(second, "phoenix")
        room.talk("b")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        expect(page.locator("#main-tile")).to_have_attribute("data-speaker", "b")
        room.talk("c")
        expect(page.locator("#main-tile")).to_have_attribute("data-speaker", "c")
        caught_up(page, room.last_sequence)
        assert viewer_state(page)["gaps"] == 0
        desktop.shot("desktop-after-restart")
        room.close()
    # nothing but the browser's own reports of its refused reconnects while the server was
    # down (the old server ended the stream cleanly: no cut chunked response)
    assert all("net::ERR_CONNECTION_REFUSED" in e for e in desktop.errors), desktop.errors


def test_demo_page_plays_the_conversation_in_step(desktop):
    page = desktop.page
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running, streamer = asyncio.run_coroutine_threadsafe(
        demo.start_demo(demo.demo_config(port=0, http_port=0)), loop).result(30)
    try:
        page.goto(f"http://127.0.0.1:{running.web.port}/rooms/demo")
        play = page.locator("#play")
        expect(play).to_be_visible()
        play.click()
        expect(play).to_have_text("❚❚ Pause sound")
        # alice opens the conversation: first speaker, and her words as a caption
        expect(page.locator("#main-tile")).to_have_attribute("data-speaker", "alice")
        expect(page.locator("#caption")).to_contain_text("alice: “Good morning everyone.")
        page.wait_for_function("document.getElementById('audio').currentTime > 0.5")
        audio_s = page.evaluate("document.getElementById('audio').currentTime")
        media_s = page.evaluate("window.__viewer.tMs") / 1000
        assert abs(audio_s - media_s) < 1.5, (audio_s, media_s)  # in step with the room
        desktop.shot("demo")
    finally:
        asyncio.run_coroutine_threadsafe(demo.stop_demo(running, streamer), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
    assert streamer.error is None
    assert desktop.errors == []
