"""The real video room (issue 20): Debian's Janus, speakerswitch's RTP ingest and the demo page
(examples/janus) in headless Debian Chromium with fake devices, one browser per participant
(the fake microphone's file is a browser flag), all on loopback.

The main tile must follow the speaker within 1 s of each turn, never switch on a backchannel
or a cough, never show a participant whose camera is off, and a pin must hold.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from service.tools import synth
from service.api import speakerswitch_pb2 as pb
from service.client import Client
from service.runtime.rtp_ingest import LEAVE_AFTER_S

from conftest import watching

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SPEAKERSWITCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required", "--disable-background-networking"]
RATE = 48000
LENGTH_S = 60  # longer than the test: the fake capture loops its file
# the script, in seconds from each participant's microphone start (the three start within
# a fraction of a second); 8 s of silence first, while the pages publish under any load
TURNS = {"alice": [(8, 12), (31, 35)], "bob": [(15, 19)], "carol": [(22, 28)]}
BACKCHANNEL = ("alice", 16.5)    # "mm-hm" in bob's turn
COUGH = ("bob", 26.5)            # in carol's turn, after her camera is on
CAROL_CAMERA_ON = 25.0           # carol joined with her camera off; on mid-sentence
PIN_BOB = 29.5                   # alice pins bob; alice's second turn does not move the feed
UNPIN = 33.5                     # alice unpins mid-turn: the feed goes to her at once
CAROL_LEAVES = 36.0              # carol's browser goes away
# Issue 20: the main tile follows within 1 s of each turn. The reference is the moment each
# page saw its microphone track, near (not exactly) when Chromium starts playing the file.
LATENCY_S = 1.0
ARTIFACTS = ROOT / ".artifacts" / "browser"
ROOM_ID = "janus-1234"  # examples/janus/bridge.py


def _port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wav(tmp: pathlib.Path, name: str, f0: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    x = np.zeros(LENGTH_S * RATE)
    for a, b in TURNS[name]:
        synth.add_at(x, synth.speech_like(rng, b - a, RATE, f0, -20), a, RATE)
    if BACKCHANNEL[0] == name:
        synth.add_at(x, synth.speech_like(rng, 0.35, RATE, f0, -24), BACKCHANNEL[1], RATE)
    if COUGH[0] == name:
        synth.add_at(x, synth.cough(rng, RATE, -18), COUGH[1], RATE)
    path = tmp / f"{name}.wav"
    synth.write_wav(path, x, RATE)
    return str(path)


@pytest.fixture
def demo(tmp_path):
    for tool in ("janus", CHROMIUM):
        if not shutil.which(tool):
            pytest.skip(f"no {tool}: `make test` installs Debian's janus, libjs-janus-gateway "
                        "and chromium when run as root with apt-get")
    if not os.path.exists("/usr/share/javascript/janus-gateway/janus.js"):
        pytest.skip("no janus.js: apt-get install libjs-janus-gateway libjs-webrtc-adapter")
    page_port = _port()
    env = dict(os.environ, PY=os.environ.get("PY", str(ROOT / ".venv/bin/python")),
               JANUS_HTTP_PORT=str(_port()), RTP_PORT=str(_port(socket.SOCK_DGRAM)),
               GRPC_PORT=str(_port()), API_PORT=str(_port()), PAGE_PORT=str(page_port),
               METRICS_PORT=str(_port()),
               # three browsers, Janus and the service share the machine: in one full suite
               # run on 2 vCPUs the ingest read 26% of its packets more than the default
               # 60 ms late and dropped them (bob's audio thinned, alice's 'yeah' won); an
               # operator on a loaded host raises the wait the same way
               SPEAKERSWITCH_RTP_JITTER_MS="200")
    if not os.path.exists(env["PY"]):
        env["PY"] = shutil.which("python3") or "python3"
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen(["sh", str(ROOT / "examples/janus/run.sh")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{page_port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "janus/info", timeout=1).read()
                urllib.request.urlopen(url + "api/rooms", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("janus-demo did not start: " + (tmp_path / "demo.log").read_text()[-2000:])
        yield url, f"127.0.0.1:{env['GRPC_PORT']}", \
            f"http://127.0.0.1:{env['METRICS_PORT']}/metrics"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _switches(events, arrivals) -> list[tuple[float, str, str]]:
    """(arrival, speaker, reason) of each Switch in the Watch stream."""
    return [(t, e.switch.speaker_id, pb.SwitchReason.Name(e.switch.reason)[len("SWITCH_REASON_"):])
            for t, e in zip(arrivals, events) if e.HasField("switch")]


def _forwarding(events, arrivals) -> list[tuple[float, list[str]]]:
    return [(t, list(e.forwarding.participant_ids)) for t, e in zip(arrivals, events)
            if e.HasField("forwarding")]


def _from(t0: float, changes: list[tuple]) -> list[tuple]:
    """The (time, participant, ...) changes from t0 on, after the one in force at t0 if it
    is alice's (shown before she spoke): what the conversation itself did to the feed."""
    before = [c for c in changes if c[0] < t0]
    after = [c for c in changes if c[0] >= t0]
    if before and before[-1][1] == "alice":
        return [(t0, *before[-1][1:])] + after
    return after


def _subscribed_share(log, t0: float, t1: float) -> tuple[float, float]:
    """From a page's [(ms, video subscriptions, other publishers)] log: the stream-seconds
    of video it subscribed to and the stream-seconds it could have (every other publisher)
    between t0 and t1."""
    got = offered = 0.0
    for (t, subs, feeds), nxt in zip(log, log[1:] + [[t1 * 1000, None, None]]):
        a, b = max(t / 1000, t0), min(nxt[0] / 1000, t1)
        if b > a:
            got += len(subs) * (b - a)
            offered += len(feeds) * (b - a)
    return got, offered


def test_main_tile_follows_the_speaker_in_a_janus_room(demo, tmp_path):
    url, grpc_target, metrics_url = demo
    wavs = {n: _wav(tmp_path, n, f0, i) for i, (n, f0) in
            enumerate((("alice", 120), ("bob", 210), ("carol", 165)))}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    arrivals: list[float] = []
    with Client(grpc_target) as client, watching(client, ROOM_ID, arrivals) as seen, \
            playwright_api.sync_playwright() as p:
        browsers, pages = {}, {}
        page_errors: list[tuple[str, str]] = []
        try:
            for name, wav in wavs.items():
                b = p.chromium.launch(executable_path=CHROMIUM,
                                      args=ARGS + [f"--use-file-for-fake-audio-capture={wav}"])
                browsers[name] = b
                pg = pages[name] = b.new_page(viewport={"width": 1100, "height": 760})
                pg.on("pageerror", lambda e, who=name: page_errors.append((who, str(e))))
                # carol joins with her camera off: the page says VIDEO_OFF once she is mapped;
                # small video, or three browsers' VP8 starve the rest of a 2-core machine
                pg.goto(url + "?video=low" + ("&camera=off" if name == "carol" else ""))
                pg.fill("#name", name)
            # all join together: each fake microphone starts its file when the page opens
            # it, so the three files run on one timeline (within the few clicks' spread).
            # Carol first: her camera-off then shows the first of the others, bob most
            # likely, and alice's first turn has a switch to measure.
            for pg in reversed(pages.values()):
                pg.click("#join")
            for pg in pages.values():
                pg.wait_for_function("demo.mapped && demo.captureAt", timeout=20000)
            # carol's VIDEO_OFF is answered at once: she is in speakerswitch's room from the
            # bridge's mapping on (it was a 404 until her first packet)
            pages["carol"].wait_for_function("demo.cameraAck", timeout=5000)
            assert pages["carol"].evaluate("demo.sent")[0][1:] == ["VIDEO_OFF", "carol", 200]
            start = {n: pg.evaluate("demo.captureAt") / 1000 for n, pg in pages.items()}

            def at(name: str, offset: float) -> None:  # wait until name's file is at offset
                time.sleep(max(0.0, start[name] + offset - time.time()))

            at("carol", CAROL_CAMERA_ON)
            pages["carol"].click("#camera")
            at("carol", TURNS["carol"][0][1] - 0.3)
            watcher = pages["alice"]  # alice's page watches the others
            # the main tile plays real video (a frame of carol's camera, once decoded)
            watcher.wait_for_function("document.getElementById('main-video').videoWidth > 0",
                                      timeout=5000)
            watcher.screenshot(path=str(ARTIFACTS / "janus-switch.png"))
            # alice pins bob (a thumbnail click) after carol's turn; her own next turn does
            # not move the main tile until she unpins
            at("alice", PIN_BOB)
            watcher.click('.thumb[data-participant="bob"]')
            at("alice", UNPIN)
            watcher.click("#unpin")
            at("alice", CAROL_LEAVES)
            logs = {n: pg.evaluate("({shownAt: demo.shownAt, playingAt: demo.playingAt, "
                                   "subs: demo.videoSubsAt, sent: demo.sent, "
                                   "cameraAt: demo.cameraAt})") for n, pg in pages.items()}
            # carol's browser goes away without a word (a crash, a lost network): her packets
            # stop, and after LEAVE_AFTER_S of none the RTP ingest lets her leave (Janus
            # notices only when her session times out, a minute later)
            left = time.time()
            browsers.pop("carol").close()
            deadline = time.time() + LEAVE_AFTER_S + 10
            while time.time() < deadline and not any(
                    t > left and "carol" not in ids for t, ids in _forwarding(seen, arrivals)):
                time.sleep(0.1)
            # bob closes his tab: the page's beacon has the bridge unmap him, he leaves at once
            closed = time.time()
            pages.pop("bob").close(run_before_unload=True)
            deadline = time.time() + 10
            while time.time() < deadline and not any(
                    t > closed and "bob" not in ids for t, ids in _forwarding(seen, arrivals)):
                time.sleep(0.1)
        except Exception:  # say where the room was when the script broke off
            shutil.copy(tmp_path / "demo.log", ARTIFACTS / "janus-demo.log")
            n = len(seen)
            print(f"page errors {page_errors}\nswitches {_switches(seen[:n], arrivals[:n])}\n"
                  f"forwarding {_forwarding(seen[:n], arrivals[:n])}")
            for name, pg in pages.items():
                with contextlib.suppress(playwright_api.Error):
                    print(name, pg.evaluate("JSON.stringify({shown: demo.shownAt, "
                                            "forwarding: demo.forwarding, sent: demo.sent, "
                                            "subs: demo.videoSubsAt})"))
            raise
        finally:
            for b in browsers.values():
                b.close()
        events = list(seen)
    # the RTP ingest's packets by outcome: "late" ones came more than its jitter allowance
    # behind (a starved machine) and were dropped
    packets = {m[1]: float(m[2]) for m in re.finditer(
        r'^speakerswitch_rtp_packets_total\{outcome="(\w+)"\} (\S+)$',
        urllib.request.urlopen(metrics_url, timeout=5).read().decode(), re.M)}
    late = packets.get("late", 0) / max(1.0, packets.get("ok", 0) + packets.get("late", 0))
    print(f"RTP packets {packets}: {late:.1%} late")
    switches = _switches(events, arrivals[:len(events)])
    shutil.copy(tmp_path / "demo.log", ARTIFACTS / "janus-demo.log")  # for a failure
    forwarding = _forwarding(events, arrivals[:len(events)])
    assert not page_errors, page_errors
    # the bridge's unmaps and refusals: a participant unheard for the call shows here
    bridge_log = [line for line in (tmp_path / "demo.log").read_text(errors="replace")
                  .splitlines() if " leaves (" in line or "refused" in line]
    report = (f"switches {switches}\nforwarding {forwarding}\npages {logs}\n"
              f"RTP packets {packets}\nbridge {bridge_log}")
    # Before anyone speaks, carol's camera-off makes speakerswitch show someone else with
    # a camera (reason VIDEO_OFF, the first of the others); never carol. If that is alice,
    # her turn has nothing to switch.
    talk = min(start.values()) + TURNS["alice"][0][0] - 0.5
    assert not [n for t, n, _ in switches if t < talk and n == "carol"], report
    # bob's cough, in carol's turn with her camera on, switched to bob and back once (a gap
    # of zeros between two of carol's words counted as a mute: silent_hold_ms now); the
    # strict lists below fail if it does again

    switches = _from(talk, switches)
    # speakerswitch's decisions (the Watch stream): exactly these, so none on alice's
    # backchannel, none to carol while her camera was off, the pin held through alice's
    # second turn until the unpin
    assert [n for _, n, _ in switches] == ["alice", "bob", "carol", "bob", "alice"], report
    assert [r for _, _, r in switches[1:]] == [
        "DOMINANT_SPEAKER", "VIDEO_ON", "PINNED", "UNPINNED"], report
    # carol is never in the forwarding set before her camera is on
    cam_on = logs["carol"]["cameraAt"] / 1000
    assert not [ids for t, ids in forwarding if "carol" in ids and t < cam_on], report
    # and out of it after the grace once her browser was gone
    gone = [t for t, ids in forwarding if t > left and "carol" not in ids]
    assert gone and gone[0] - left >= LEAVE_AFTER_S - 0.5, report
    print(f"carol left the forwarding set {gone[0] - left:.2f} s after her browser closed")
    # bob, who closed his tab, at once
    gone = [t for t, ids in forwarding if t > closed and "bob" not in ids]
    assert gone and gone[0] - closed <= LATENCY_S, report
    print(f"bob left the forwarding set {gone[0] - closed:.2f} s after closing his tab")
    # the clicks came when the script says (else the machine is too slow for this test)
    pin, unpin = [t / 1000 for t, *_ in logs["alice"]["sent"]]
    assert pin < start["alice"] + TURNS["alice"][1][0] < start["alice"] + UNPIN <= unpin, report
    # every page's main tile: the same participants, each within LATENCY_S of its turn
    turn_at = {"alice": start["alice"] + TURNS["alice"][0][0],
               "bob": start["bob"] + TURNS["bob"][0][0],
               "carol": cam_on}  # camera on mid-sentence: at once
    for name, log in logs.items():
        shown = _from(talk, [(t / 1000, n) for t, n in log["shownAt"] if n])
        names = [n for _, n in shown]
        assert names == ["alice", "bob", "carol", "bob", "alice"], (name, report)
        for who in ("alice", "bob", "carol"):
            t = next(t for t, n in shown if n == who)
            print(f"{name}'s page: {who} shown {t - turn_at[who]:+.3f} s after the turn"
                  + (" (camera on)" if who == "carol" else "")
                  + (" (shown before anyone spoke)" if t == talk else ""))
            assert t - turn_at[who] <= LATENCY_S, (name, who, report)
        assert shown[2][0] >= cam_on, (name, report)  # not before her camera is on
        playing = [(t / 1000, n) for t, n in log["playingAt"] if n]
        for who in ("bob", "carol") if name == "alice" else ():
            since = next(t for t, n in shown if n == who)
            t = next((t for t, n in playing if n == who and t >= since), None)
            assert t is not None, (name, who, report)  # its video plays in the main tile
            print(f"{name}'s page: {who}'s first frame {t - turn_at[who]:+.3f} s after")
            assert t - turn_at[who] <= 2 * LATENCY_S, (name, who, report)
        # the pin held through alice's second turn (from 26 s) until she unpinned
        assert shown[4][0] >= start["alice"] + UNPIN, (name, report)
    # what the page subscribed to: only the video it shows (forwarding set + main tile)
    got, offered = _subscribed_share(logs["alice"]["subs"], start["alice"],
                                     start["alice"] + CAROL_LEAVES)
    print(f"alice's page: {got:.0f} of {offered:.0f} stream-seconds of video subscribed "
          f"({got / offered:.0%})")
    assert got < offered, report
