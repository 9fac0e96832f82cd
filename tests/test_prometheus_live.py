"""The alert rules in a real Prometheus scraping a real server (issue 18 item 4).

Debian's /usr/bin/prometheus runs on loopback, started and stopped here, with
deploy/prometheus/rules.yml loaded and a job of another name than "speakerswitch". Every
duration in the rules is divided by 30 (5m windows become 10 s, `for: 5m` 10 s) and the
server is scraped and the rules evaluated every second, so that minutes of an alert's life
take seconds; the expressions and thresholds are the shipped ones. Then:

- healthy: `speakerswitch replay --server` (the README's client, 50 ticks a request) in a
  loop: no alert is pending or firing at any moment;
- refusals: ticks with an out-of-range level among accepted ones: SpeakerSwitchErrorRateHigh
  fires, and nothing else does;
- a hung process (SIGSTOP): its scrape fails and SpeakerSwitchDown fires.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from service.api import speakerswitch_pb2 as pb
from service.client import Client

from conftest import level_tick

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
SPEED = 30
"""Rule durations are divided by this: 5m -> 10s."""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian package 'prometheus'; make "
    "test installs it when it can)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seconds(d: str) -> int:
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", d))


def compressed_rules(text: str) -> str:
    """rules.yml with every duration (range selectors and `for:`) divided by SPEED."""
    def scaled(d: str) -> str:
        return f"{max(1, _seconds(d) // SPEED)}s"
    text = re.sub(r"\[(\d+[smh])\]", lambda m: f"[{scaled(m.group(1))}]", text)
    return re.sub(r"^(\s*for:\s*)(\d+[smh])\s*$", lambda m: m.group(1) + scaled(m.group(2)),
                  text, flags=re.M)


def test_compressed_rules_keep_expressions_and_thresholds():
    original = yaml.safe_load(RULES.read_text())
    fast = yaml.safe_load(compressed_rules(RULES.read_text()))
    for g0, g1 in zip(original["groups"], fast["groups"]):
        for r0, r1 in zip(g0["rules"], g1["rules"]):
            assert re.sub(r"\[\d+[smh]\]", "[]", r0["expr"]) == \
                re.sub(r"\[\d+[smh]\]", "[]", r1["expr"])
            if "for" in r0:
                assert _seconds(r1["for"]) == _seconds(r0["for"]) // SPEED
    assert "[10s]" in compressed_rules(RULES.read_text())


class Stack:
    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.grpc_port, self.metrics_port = _free_port(), _free_port()
        self.prom_port = _free_port()
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
             "--port", str(self.grpc_port), "--metrics-port", str(self.metrics_port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.server)
        (self.tmp / "rules.yml").write_text(compressed_rules(RULES.read_text()))
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [str(self.tmp / "rules.yml")],
            "scrape_configs": [{"job_name": "a-release", "static_configs": [
                {"targets": [f"127.0.0.1:{self.metrics_port}"]}]}]}))
        self.prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}"],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / "prometheus.log", "w"))
        self.procs.append(self.prom)
        with Client(f"127.0.0.1:{self.grpc_port}") as c:
            c.wait_ready(30)
        self.wait(lambda: self.query('up{job="a-release"} == 1'), 60, "the first scrape")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}{path}", timeout=5) as r:
            return json.load(r)["data"]

    def query(self, expr: str) -> list:
        from urllib.parse import quote
        return self.api(f"/api/v1/query?query={quote(expr)}")["result"]

    def alerts(self) -> list[dict]:
        return self.api("/api/v1/alerts")["alerts"]

    def wait(self, cond, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = cond()
            if got:
                return got
            time.sleep(0.5)
        log = (self.tmp / "prometheus.log").read_text()[-2000:]
        raise AssertionError(f"timed out waiting for {what}; prometheus log tail:\n{log}")


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _replay(stack: Stack, sample: pathlib.Path, room: str) -> None:
    r = subprocess.run([sys.executable, "-m", "service.cli", "replay", "--levels",
                        str(sample / "levels.csv"), "--out", os.devnull, "--room", room,
                        "--server", f"127.0.0.1:{stack.grpc_port}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _firing(stack: Stack, name: str) -> list[dict]:
    return [a for a in stack.alerts() if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


def test_rules_silent_when_healthy_and_firing_on_faults(stack, sample_dir):
    # healthy: the README's replay through the server, for longer than any rule's window
    # plus its `for` (10 s + 20 s once compressed)
    seen: list[dict] = []
    deadline = time.monotonic() + 30
    n = 0
    while time.monotonic() < deadline:
        _replay(stack, sample_dir, f"healthy-{n}")
        n += 1
        seen += stack.alerts()
    assert n >= 3
    assert stack.query("sum(speakerswitch_ticks_total) > 0"), "the load did not arrive"
    assert not seen, [(a["labels"]["alertname"], a["state"]) for a in seen]

    # refusals: one tick in ten has a level out of range (0..127), while the alert is awaited
    done = threading.Event()
    responses: list = []

    def refused():
        t, batch = 0, 0
        while not done.is_set():
            ticks = [level_tick("bad", t + 20 * i, {"a": 200 if i % 10 == 0 else 40})
                     for i in range(50)]
            t, batch = t + 1000, batch + 1
            yield pb.StreamRequest(batch_id=batch, ticks=ticks)
            time.sleep(0.05)

    def send():
        with Client(f"127.0.0.1:{stack.grpc_port}") as c:
            responses.extend(c.stream(refused()))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        firing = stack.wait(lambda: _firing(stack, "SpeakerSwitchErrorRateHigh"), 40,
                            "SpeakerSwitchErrorRateHigh")
        others = {a["labels"]["alertname"] for a in stack.alerts()} \
            - {"SpeakerSwitchErrorRateHigh"}
    finally:
        done.set()
        sender.join(30)
    assert firing[0]["labels"]["instance"] == f"127.0.0.1:{stack.metrics_port}"
    assert not others, others
    assert any(r.rejections for r in responses)

    # a hung process: the scrape fails, and the down alert fires for this job of any name
    os.kill(stack.server.pid, signal.SIGSTOP)
    try:
        down = stack.wait(lambda: _firing(stack, "SpeakerSwitchDown"), 30, "SpeakerSwitchDown")
        assert down[0]["labels"]["job"] == "a-release"
    finally:
        os.kill(stack.server.pid, signal.SIGCONT)
