"""Active-speaker detection and video switching: run the gRPC service, replay and score
conversations, issue tokens, check health, follow a room, or play the demo. Run
speakerswitch COMMAND --help for a command's options."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time

import numpy as np

from dsp.tuning import ALGORITHMS, DEFAULT_PROFILE, PROFILES

from . import config as config_mod
from .api import speakerswitch_pb2 as pb

# Flags of `replay` that override the profile, with the RoomConfig field they set.
TUNING_FLAGS = {"hold_ms": int, "min_speech_ms": int, "interrupt_ms": int,
                "outlast_ms": int, "switch_margin_db": float}


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gRPC service (foreground)",
                       description="Run the gRPC service in the foreground. Settings: flags > "
                       "SPEAKERSWITCH_* environment > --config TOML > embedded defaults.")
    p.add_argument("--config", metavar="FILE", help="TOML file (keys as below, top level or "
                   "under [server])")
    p.add_argument("--host", help="gRPC bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gRPC port (default 50051)")
    p.add_argument("--metrics-host", help="Prometheus bind address (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 9100, -1 off)")
    p.add_argument("--http-host", help="web viewer bind address (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="web viewer and HTTP API port (default -1: "
                   "off; make run uses 8080)")
    p.add_argument("--profile", choices=sorted(PROFILES), help="default room profile")
    p.add_argument("--idle-timeout-s", type=float, help="drop rooms idle this long (300)")
    p.add_argument("--max-participants-per-room", type=int)
    p.add_argument("--max-rooms", type=int)
    p.add_argument("--max-ticks-per-batch", type=int)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--workers", type=int, help="processes sharing the port (1); worker i "
                   "serves metrics on metrics-port + i")
    p.add_argument("--redis-url", help="share decisions and room state through this Redis "
                   "(redis://host:port/db) for several replicas; see README: Scaling out")
    p.add_argument("--redis-prefix", help="key prefix in Redis (speakerswitch)")
    sec = p.add_argument_group("security (see README: Security)")
    sec.add_argument("--insecure-no-auth", action="store_true", default=None,
                     help="accept calls without a token (local development only)")
    sec.add_argument("--jwt-secret-file", help="HS256 secret verifying tokens")
    sec.add_argument("--jwt-public-key-file", help="PEM public key verifying RS256/ES256 tokens")
    sec.add_argument("--tls-cert-file", help="serve TLS with this certificate chain")
    sec.add_argument("--tls-key-file", help="... and this private key")
    sec.add_argument("--tls-client-ca-file", help="require client certificates from this CA "
                     "(mutual TLS)")


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run a recorded conversation through the engine",
                       description="Replay a conversation and write one JSON line per video "
                       "switch: {\"t_ms\": ..., \"speaker\": ...}.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--levels", metavar="CSV", help="t_ms,participant,level,voice rows")
    src.add_argument("--wav-dir", metavar="DIR", help="one mono 16-bit WAV per participant")
    p.add_argument("--events", metavar="JSONL", help="participant state changes: "
                   '{"t_ms": 1200, "participant": "p2", "video": false} per line (keys video, '
                   "muted, pinned, screen_share, join, leave)")
    p.add_argument("--out", required=True, metavar="FILE", help="decisions JSONL ('-': stdout)")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="send through a running server instead of the in-process engine")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help=f"tuning profile (default {DEFAULT_PROFILE})")
    for name, kind in TUNING_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"override the profile's {name}")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                   help="who decides the floor (default speakerswitch; dsi and loudest are "
                   "the peers it is measured against)")
    p.add_argument("--room", help="room id (default: 'replay', or a fresh one with --server)")
    p.add_argument("--batch-ticks", type=int, default=50, help="ticks per request (50)")
    p.add_argument("--connect-timeout-s", type=float, default=10.0,
                   help="with --server: how long to wait for it (10)")
    p.add_argument("--plot", metavar="PNG", help="also draw a timeline picture")
    p.add_argument("--truth", metavar="JSON", help="ground truth to draw on the timeline")
    _client_args(p)


def _client_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (with --server)")
    g.add_argument("--token", default=os.environ.get("SPEAKERSWITCH_TOKEN"),
                   help="bearer token (default: $SPEAKERSWITCH_TOKEN)")
    g.add_argument("--tls-ca-file", help="connect with TLS, trusting this CA")
    g.add_argument("--tls-cert-file", help="client certificate (mutual TLS)")
    g.add_argument("--tls-key-file", help="client key (mutual TLS)")


def _token_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="issue bearer tokens",
                       description="Issue a signed bearer token for a tenant.")
    tsub = p.add_subparsers(dest="token_command", required=True)
    c = tsub.add_parser("create", help="print a new token")
    c.add_argument("--tenant", required=True)
    c.add_argument("--grant", required=True, help="comma-separated: publish,watch")
    c.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (1h)")
    c.add_argument("--rooms", help="fnmatch pattern of the rooms it may reach")
    c.add_argument("--key", required=True, metavar="FILE",
                   help="HS256 secret, or RS256/ES256 private key PEM")
    c.add_argument("--algorithm", choices=["HS256", "RS256", "ES256"], default="HS256")
    c.add_argument("--audience")
    c.add_argument("--issuer")


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="write the synthetic sample conversation",
                       description="Write a deterministic synthetic conversation: one WAV per "
                       "participant, levels.csv and truth.json.")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=int, default=16000, choices=[8000, 16000, 32000, 48000])


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score decisions against ground truth",
                       description="Score switching decisions against ground truth. With "
                       "directories: score DECISIONS/<scenario>.jsonl against "
                       "TRUTH/<scenario>/truth.json and print a table by scenario type.")
    p.add_argument("--truth", required=True, metavar="TRUTH.json|DIR")
    p.add_argument("--decisions", required=True, metavar="DECISIONS.jsonl|DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="directory table as markdown")


def _scenarios_parser(sub: argparse._SubParsersAction) -> None:
    from .scenarios import TYPES

    p = sub.add_parser("scenarios", help="write the evaluation scenarios",
                       description="Write deterministic multi-participant conversations with "
                       "ground truth (WAVs, levels.csv, truth.json per scenario).")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--types", default=",".join(TYPES), help="comma-separated subset")
    p.add_argument("--variants", type=int, default=3, help="seeds per type (3)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each (60)")


def _health_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="check a server's gRPC health (exit 0 if SERVING)",
                       description="A gRPC health check (grpc.health.v1), for container and "
                       "orchestrator probes: exit 0 when the server reports SERVING, else 1.")
    p.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT")
    p.add_argument("--service", default="", help="service name ('' = the whole server)")
    p.add_argument("--timeout-s", type=float, default=3.0)
    p.add_argument("--tls-ca-file", help="connect with TLS, trusting this CA")
    p.add_argument("--tls-cert-file", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key-file", help="client key (mutual TLS)")


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve with the web viewer and stream a sample "
                       "conversation through it (with sound in the page)",
                       description="Start the service with its web viewer, stream the bundled "
                       "2.7-minute conversation through the gRPC API in real time (looping), "
                       "and print the room page's address; its Play button plays the "
                       "conversation in step with the room. Local and unauthenticated.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (50051; 0: any)")
    p.add_argument("--http-port", type=int, default=8080, help="viewer port (8080; 0: any)")
    p.add_argument("--metrics-port", type=int, default=-1, help="Prometheus port (-1: off)")
    p.add_argument("--speed", type=float, default=1.0, help="x real time (1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")


def cmd_demo(a: argparse.Namespace) -> int:
    from . import demo

    if a.speed <= 0:
        print("speakerswitch demo: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        cfg = demo.demo_config(a.host, a.port, a.http_port, a.metrics_port)
    except ValueError as e:
        print(f"speakerswitch demo: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo.run(cfg, a.speed, open_browser=not a.no_browser))
    except ValueError as e:
        print(f"speakerswitch demo: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"speakerswitch demo: {e} (is `make run` or another demo using the port? "
              "try --port 0 --http-port 0)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="speakerswitch", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _replay_parser(sub)
    _sample_parser(sub)
    _evaluate_parser(sub)
    _scenarios_parser(sub)
    _token_parser(sub)
    _health_parser(sub)
    _plot_parser(sub)
    _watch_parser(sub)
    _demo_parser(sub)
    return ap


def cmd_serve(a: argparse.Namespace) -> int:
    keys = ["host", "port", "metrics_host", "metrics_port", "http_host", "http_port",
            "profile", "idle_timeout_s",
            "max_participants_per_room", "max_rooms", "max_ticks_per_batch", "log_level",
            "insecure_no_auth", "jwt_secret_file", "jwt_public_key_file", "tls_cert_file",
            "tls_key_file", "tls_client_ca_file", "workers", "redis_url", "redis_prefix"]
    try:
        cfg = config_mod.load({k: getattr(a, k) for k in keys}, a.config)
    except (ValueError, OSError) as e:
        print(f"speakerswitch serve: {e}", file=sys.stderr)
        return 2
    if cfg.workers > 1:
        return _serve_workers(cfg)
    return _serve_one(cfg)


def _serve_one(cfg) -> int:
    from .server import serve

    logging.basicConfig(level=cfg.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(cfg))
    except OSError as e:  # a port taken, Redis unreachable: say so, no traceback
        print(f"speakerswitch serve: {e}", file=sys.stderr)
        return 2
    return 0


def _serve_workers(cfg) -> int:
    """N processes on one port (SO_REUSEPORT: the kernel spreads connections); SIGTERM and
    SIGINT are passed on to every worker, and we exit when they all have."""
    import dataclasses
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(cfg.workers):
        wcfg = dataclasses.replace(
            cfg, workers=1, reuse_port=True,
            metrics_port=cfg.metrics_port + i if cfg.metrics_port > 0 else cfg.metrics_port,
            http_port=cfg.http_port + i if cfg.http_port > 0 else cfg.http_port)
        p = ctx.Process(target=_serve_one, args=(wcfg,), name=f"speakerswitch-worker-{i}")
        p.start()
        procs.append(p)

    def forward(signum, _frame):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return 0 if all(p.exitcode == 0 for p in procs) else 1


def cmd_replay(a: argparse.Namespace) -> int:
    from . import replay

    room_config = pb.RoomConfig(profile=a.profile or "", algorithm=a.algorithm or "")
    for name in TUNING_FLAGS:
        value = getattr(a, name)
        if value is not None:
            setattr(room_config, name, value)
    room_id = a.room or (replay.new_room_id() if a.server else "replay")
    t0 = time.perf_counter()
    try:
        ticks = (replay.levels_ticks(a.levels, room_id) if a.levels
                 else replay.wav_ticks(a.wav_dir, room_id))
        requests = _with_progress(replay.requests(ticks, room_config, a.events,
                                                  a.batch_ticks), t0)
        responses = (replay.run_remote(requests, a.server, a.connect_timeout_s,
                                       client_options(a)) if a.server
                     else replay.run_local(requests))
        decisions: list = []
        with (contextlib.nullcontext(sys.stdout) if a.out == "-" else open(a.out, "w")) as out:
            n, _ = replay.write_switches(responses, out, decisions)
        if a.plot:
            _plot(a.plot, a.levels, a.wav_dir, decisions, a.truth)
    except (replay.InputError, OSError) as e:
        print(f"speakerswitch replay: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # gRPC failures: say what failed, not a traceback
        import grpc

        if isinstance(e, grpc.RpcError):
            print(f"speakerswitch replay: server {a.server}: {e.code().name}: {e.details()}",
                  file=sys.stderr)
            return 1
        if isinstance(e, grpc.FutureTimeoutError):
            print(f"speakerswitch replay: server {a.server} is not reachable", file=sys.stderr)
            return 1
        raise
    print(f"{n} switches in {time.perf_counter() - t0:.2f} s -> {a.out}", file=sys.stderr)
    return 0


def _with_progress(requests, t0: float):
    """Pass requests through, showing the media time replayed (on a terminal only)."""
    from .progress import Progress

    bar = Progress("replay", unit=" s of media")
    try:
        for req in requests:
            if req.ticks:
                media_s = req.ticks[-1].timestamp_ms / 1000
                speed = media_s / max(time.perf_counter() - t0, 1e-9)
                bar.update(round(media_s), f"({speed:.0f}x real time)")
            yield req
    finally:
        bar.close()


def _plot(png: str, levels_csv: str | None, wav_dir: str | None, decisions: list,
          truth_path: str | None) -> None:
    import json
    import pathlib

    from . import plot

    if levels_csv:
        levels = plot.levels_by_participant(levels_csv)
    else:  # the levels a sender would report for these tracks
        from .replay import read_wav
        from .scenarios import levels_rows

        tracks, rate = {}, 16000
        for path in sorted(pathlib.Path(wav_dir).glob("*.wav")):
            rate, pcm = read_wav(path)
            tracks[path.stem] = np.frombuffer(pcm, "<i2") / 32768.0
        levels = plot.levels_from_rows(levels_rows(tracks, rate))
    truth = json.loads(pathlib.Path(truth_path).read_text()) if truth_path else None
    plot.timeline(png, levels, decisions, truth, title=pathlib.Path(levels_csv or wav_dir).name)
    print(f"timeline -> {png}", file=sys.stderr)


def _watch_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="follow a room live in the terminal",
                       description="Follow one room: who is shown, the ranked speakers with "
                       "level bars, recent switches; refreshed in place on a terminal, one "
                       "line per switch otherwise.")
    p.add_argument("room")
    p.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT")
    p.add_argument("--wait", action="store_true", help="wait for the room to appear")
    p.add_argument("--max-events", type=int, default=0, help="stop after this many (0: never)")
    _client_args(p)


def cmd_watch(a: argparse.Namespace) -> int:
    import grpc

    from .client import Client
    from .watch_view import RoomView

    view = RoomView()
    live = sys.stdout.isatty()
    n = 0
    with Client(a.server, **client_options(a)) as c:
        try:
            for event in c.watch(a.room, wait_for_room=a.wait):
                view.apply(event)
                n += 1
                if live:
                    sys.stdout.write("\x1b[H\x1b[2J" + view.render() + "\n")
                    sys.stdout.flush()
                elif event.HasField("snapshot") or event.HasField("switch"):
                    t, prev, new, reason = (view.switches[0] if event.HasField("switch")
                                            else (event.timestamp_ms, "", view.shown, "SNAPSHOT"))
                    print(f"{t / 1000:.2f} s  {prev or '-'} -> {new or '-'}  ({reason})",
                          flush=True)
                if a.max_events and n >= a.max_events:
                    break
        except grpc.RpcError as e:
            print(f"speakerswitch watch: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
    return 0


def _plot_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw a timeline of decisions over levels",
                       description="Draw a decisions file over the conversation's levels "
                       "(and the ground truth, if given) as a PNG timeline.")
    p.add_argument("decisions", metavar="DECISIONS.jsonl")
    p.add_argument("--levels", required=True, metavar="CSV")
    p.add_argument("--truth", metavar="JSON")
    p.add_argument("--out", required=True, metavar="PNG")


def cmd_plot(a: argparse.Namespace) -> int:
    from .evaluate import load_decisions

    try:
        _plot(a.out, a.levels, None, load_decisions(a.decisions), a.truth)
    except (OSError, ValueError) as e:
        print(f"speakerswitch plot: {e}", file=sys.stderr)
        return 2
    return 0


def client_options(a: argparse.Namespace) -> dict:
    return dict(token=a.token, tls_ca_file=a.tls_ca_file, tls_cert_file=a.tls_cert_file,
                tls_key_file=a.tls_key_file)


def cmd_token(a: argparse.Namespace) -> int:
    from .auth import create_token, parse_duration

    try:
        with open(a.key, "rb") as f:
            key = f.read()
        if a.algorithm == "HS256":
            key = key.strip()
        print(create_token(key, a.tenant, [g.strip() for g in a.grant.split(",") if g.strip()],
                           parse_duration(a.ttl), a.rooms, a.algorithm,
                           audience=a.audience, issuer=a.issuer))
    except (OSError, ValueError) as e:
        print(f"speakerswitch token: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from .client import Client

    with Client(a.server, tls_ca_file=a.tls_ca_file, tls_cert_file=a.tls_cert_file,
                tls_key_file=a.tls_key_file) as c:
        try:
            reply = health_pb2_grpc.HealthStub(c.channel).Check(
                health_pb2.HealthCheckRequest(service=a.service), timeout=a.timeout_s)
        except grpc.RpcError as e:
            print(f"{a.server}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{a.server}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def cmd_sample(a: argparse.Namespace) -> int:
    from .sample import write_sample

    truth = write_sample(a.out, seed=a.seed, rate=a.rate)
    print(f"wrote {a.out}: {len(truth['participants'])} participants, "
          f"{truth['duration_ms'] / 1000:.0f} s, {len(truth['changes'])} floor changes",
          file=sys.stderr)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    import json
    import pathlib

    from . import evaluate as ev

    try:
        if pathlib.Path(a.truth).is_dir():
            from .progress import Progress

            bar = Progress("evaluate", total=len(list(pathlib.Path(a.truth).glob("*/truth.json"))))
            scores, missing = ev.score_dir(a.truth, a.decisions, progress=bar.update)
            bar.close()
            rows = ev.by_type(scores)
            if a.json:
                print(json.dumps({"by_type": dict(rows[:-1]), "overall": rows[-1][1],
                                  "scenarios": [s.as_dict() for s in scores],
                                  "missing": missing}, indent=1))
            else:
                print(ev.format_table(rows, markdown=a.markdown))
            if missing:
                print(f"warning: no decisions for {len(missing)} scenario(s): "
                      f"{', '.join(missing)}", file=sys.stderr)
            return 0
        truth = json.loads(pathlib.Path(a.truth).read_text())
        sc = ev.score(truth, ev.load_decisions(a.decisions))
    except (OSError, ValueError, KeyError) as e:
        print(f"speakerswitch evaluate: {e}", file=sys.stderr)
        return 2
    d = sc.as_dict()
    if a.json:
        print(json.dumps(d, indent=1))
        return 0
    ms = lambda v: "-" if v is None else f"{v:.0f} ms"  # noqa: E731
    acc = "-" if d["accuracy"] is None else f"{100 * d['accuracy']:.1f}% of floor time"
    print(f"scenario  {sc.scenario or a.truth} ({sc.type or '-'}), {sc.minutes:.2f} min\n"
          f"accuracy  {acc}\n"
          f"delay     median {ms(d['delay_median_ms'])}, p90 {ms(d['delay_p90_ms'])}, "
          f"max {ms(d['delay_max_ms'])}; missed {sc.missed}/{sc.changes} changes\n"
          f"false     {sc.false_switches} ({d['false_per_min']:.2f}/min)\n"
          f"switches  {sc.switches} ({d['switches_per_min']:.2f}/min) vs true changes "
          f"{sc.changes} ({d['true_changes_per_min']:.2f}/min)\n"
          f"flicker   {sc.flicker} ({d['flicker_per_min']:.2f}/min)")
    return 0


def cmd_scenarios(a: argparse.Namespace) -> int:
    from . import scenarios

    return scenarios.main(["--out", a.out, "--types", a.types, "--variants", str(a.variants),
                           "--seconds", str(a.seconds)])


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return {"serve": cmd_serve, "replay": cmd_replay, "sample": cmd_sample,
            "evaluate": cmd_evaluate, "scenarios": cmd_scenarios, "token": cmd_token,
            "health": cmd_health, "plot": cmd_plot, "watch": cmd_watch,
            "demo": cmd_demo}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
