"""The `speakerswitch` command line: replay in both input modes, in-process and through a
server, and `serve` as a real process."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.cli import main


def replay(*args):
    return main(["replay", *map(str, args)])


def lines(path):
    return [json.loads(x) for x in open(path)]


@pytest.mark.parametrize("mode", ["levels", "wav"])
def test_replay_follows_the_sample_conversation(sample_dir, tmp_path, mode):
    src = ["--levels", sample_dir / "levels.csv"] if mode == "levels" else ["--wav-dir", sample_dir]
    out = tmp_path / "d.jsonl"
    assert replay(*src, "--out", out) == 0
    got = lines(out)
    truth = json.load(open(sample_dir / "truth.json"))
    assert [d["speaker"] for d in got] == [f[2] for f in truth["floor"]]
    for d, (start, _end, _p) in zip(got, truth["floor"]):
        assert start < d["t_ms"] <= start + 400          # causal, and fast
    assert got[0]["reason"] == "FIRST_SPEAKER" and got[0]["previous"] is None
    assert set(got[1]) >= {"t_ms", "speaker", "previous", "reason", "audio_speaker", "score"}


@pytest.mark.parametrize("mode", ["levels", "wav"])
def test_replay_through_the_server_gives_identical_decisions(sample_dir, tmp_path, server, mode):
    src = ["--levels", sample_dir / "levels.csv"] if mode == "levels" else ["--wav-dir", sample_dir]
    local, remote, again = tmp_path / "l.jsonl", tmp_path / "r.jsonl", tmp_path / "r2.jsonl"
    assert replay(*src, "--out", local) == 0
    assert replay(*src, "--out", remote, "--server", server.target) == 0
    assert replay(*src, "--out", again, "--server", server.target) == 0   # a fresh room
    assert local.read_text() and local.read_text() == remote.read_text() == again.read_text()


def test_profile_and_parameter_flags_change_the_decisions(sample_dir, tmp_path):
    base, slow = tmp_path / "b.jsonl", tmp_path / "s.jsonl"
    assert replay("--levels", sample_dir / "levels.csv", "--out", base) == 0
    assert replay("--levels", sample_dir / "levels.csv", "--out", slow, "--profile", "podcast",
                  "--min-speech-ms", 900) == 0
    b, s = lines(base), lines(slow)
    assert [d["speaker"] for d in b] == [d["speaker"] for d in s]
    assert all(ds["t_ms"] - db["t_ms"] >= 600 for db, ds in zip(b[1:], s[1:]))


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("t_ms,participant,level,voice\n0,p1,300,1\n")
    assert replay("--levels", csv, "--out", tmp_path / "o.jsonl") == 2
    assert "bad.csv:2" in capsys.readouterr().err
    csv.write_text("time,who,level\n")
    assert replay("--levels", csv, "--out", tmp_path / "o.jsonl") == 2
    assert "header" in capsys.readouterr().err
    assert replay("--wav-dir", tmp_path, "--out", tmp_path / "o.jsonl") == 2
    assert "no .wav files" in capsys.readouterr().err


def test_replay_to_an_absent_server_fails_cleanly(sample_dir, tmp_path, capsys):
    port = free_port()       # nothing listens there
    assert replay("--levels", sample_dir / "levels.csv", "--out", tmp_path / "o.jsonl",
                  "--server", f"127.0.0.1:{port}", "--connect-timeout-s", 0.5) == 1
    assert f"127.0.0.1:{port} is not reachable" in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_process_becomes_healthy_and_stops_on_sigterm(tmp_path):
    port, mport = free_port(), free_port()
    env = dict(os.environ, SPEAKERSWITCH_METRICS_PORT=str(mport))
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                             "--insecure-no-auth"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert f"serving gRPC on 127.0.0.1:{port}" in out and "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_rejects_bad_settings(capsys):
    assert main(["serve", "--port", "70000", "--insecure-no-auth"]) == 2
    assert "port: 70000" in capsys.readouterr().err


def test_sample_command_is_deterministic(tmp_path):
    assert main(["sample", "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", "--out", str(tmp_path / "b")]) == 0
    for name in ("p1.wav", "levels.csv", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_replay_applies_an_events_file(sample_dir, tmp_path):
    events = tmp_path / "events.jsonl"
    # p2 has its camera off for its whole turn (5.0-9.0 s) and turns it on at 7.0 s
    events.write_text('{"t_ms": 0, "participant": "p2", "video": false}\n'
                      '{"t_ms": 7000, "participant": "p2", "video": true}\n')
    out = tmp_path / "d.jsonl"
    assert replay("--levels", sample_dir / "levels.csv", "--events", events, "--out", out) == 0
    got = [(d["t_ms"], d["speaker"], d["reason"]) for d in lines(out)]
    assert got[1] == (7000, "p2", "VIDEO_ON")         # not at p2's turn start, at camera on
    assert [s for _, s, _ in got] == ["p1", "p2", "p3", "p1"]


def test_replay_events_file_errors_name_the_line(sample_dir, tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    events.write_text('{"t_ms": 0, "participant": "p2", "camera": false}\n')
    assert replay("--levels", sample_dir / "levels.csv", "--events", events,
                  "--out", tmp_path / "o.jsonl") == 2
    assert "events.jsonl:1: unknown keys ['camera']" in capsys.readouterr().err


def test_health_command(server, capsys):
    assert main(["health", "--server", server.target]) == 0
    assert "SERVING" in capsys.readouterr().out
    assert main(["health", "--server", server.target, "--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main(["health", "--server", f"127.0.0.1:{free_port()}", "--timeout-s", "0.5"]) == 1


def test_plot_commands_draw_a_timeline(sample_dir, tmp_path):
    import struct

    dec, png, png2 = tmp_path / "d.jsonl", tmp_path / "t.png", tmp_path / "w.png"
    assert replay("--levels", sample_dir / "levels.csv", "--out", dec) == 0
    assert main(["plot", str(dec), "--levels", str(sample_dir / "levels.csv"),
                 "--truth", str(sample_dir / "truth.json"), "--out", str(png)]) == 0
    assert replay("--wav-dir", sample_dir, "--out", tmp_path / "d2.jsonl", "--plot", png2) == 0
    for p in (png, png2):
        head = p.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width >= 1000 and height >= 300


def test_serve_with_two_workers_shares_the_port_and_stops_together(sample_dir, tmp_path):
    import urllib.request

    port, mport = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
                             "--port", str(port), "--metrics-port", str(mport), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        for m in (mport, mport + 1):           # every worker answers on its metrics port
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{m}/metrics", timeout=1).read()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"worker metrics {m} never came up"
                    time.sleep(0.1)
        children = [c for c in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
                    if b"spawn_main" in open(f"/proc/{c}/cmdline", "rb").read()]
        assert len(children) == 2                   # the workers (not multiprocessing's helper)
        out = tmp_path / "w.jsonl"
        assert replay("--levels", sample_dir / "levels.csv", "--out", out,
                      "--server", f"127.0.0.1:{port}") == 0
        assert len(lines(out)) == 4
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert log.count(f"serving gRPC on 127.0.0.1:{port}") == 2
        assert all(not os.path.exists(f"/proc/{c}") for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_several_workers_need_a_fixed_port(capsys):
    assert main(["serve", "--insecure-no-auth", "--port", "0", "--workers", "2"]) == 2
    assert "fixed port" in capsys.readouterr().err


def test_version_is_the_installed_distributions(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"speakerswitch {metadata.version('speakerswitch')}"
