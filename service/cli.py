"""Active-speaker detection and video switching: run the gRPC service, replay and score
conversations, issue tokens, check health, follow a room, or play the demo. Run
speakerswitch COMMAND --help for a command's options."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time

import numpy as np

from dsp.tuning import ALGORITHMS, DEFAULT_PROFILE, PROFILES

from .runtime import config as config_mod
from .api import speakerswitch_pb2 as pb

# Flags of `replay` that override the profile, with the RoomConfig field they set.
TUNING_FLAGS = {"hold_ms": int, "min_speech_ms": int, "interrupt_ms": int,
                "outlast_ms": int, "switch_margin_db": float}


# --- bad input is one line on stderr naming the flag or file, and exit code 2 -------------

def _fail(command: str, message: str) -> int:
    print(f"speakerswitch {command}: {message}", file=sys.stderr)
    return 2


def _os_error(e: OSError) -> str:
    """'PATH: reason' for a file error, without the errno number."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def _one_line(text: str | None) -> str:
    """A server's or library's message on one line."""
    return " ".join((text or "").split())


def _range_text(lo, hi, above) -> str:
    """'outside 0..60000', 'not > 0', 'not >= 1' (what _number's error says)."""
    if above is not None:
        return f"not > {above:g}" + (f" and <= {hi:g}" if hi is not None else "")
    if hi is None:
        return f"not >= {lo:g}"
    return f"outside {lo:g}..{hi:g}"


def _number(kind: type, lo: float | None = None, hi: float | None = None,
            above: float | None = None):
    """An argparse type: a finite ``kind`` in lo..hi (``above``: strictly greater)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if (not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)
                or (above is not None and v <= above)):
            raise argparse.ArgumentTypeError(f"{text} is {_range_text(lo, hi, above)}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _tuning_range(name: str) -> tuple[float, float]:
    """The range the server accepts for this RoomConfig override (one table, in rooms)."""
    from .runtime.rooms import OVERRIDE_RANGES

    return OVERRIDE_RANGES[name]


def _server_target(text: str) -> str:
    """An argparse type: HOST:PORT (or a gRPC URI: unix:PATH, dns:///HOST:PORT, ...)."""
    if text.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return text
    host, _, port = text.rpartition(":")
    if (not host.strip("[]") or any(c.isspace() for c in text) or not port.isdigit()
            or not 1 <= int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    return text


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
    p.add_argument("--rtp-host", help="RTP ingest bind address, IPv4 or IPv6 (default 127.0.0.1)")
    p.add_argument("--rtp-port", type=int, help="RTP ingest UDP port (default -1: off); "
                   "see docs/rtp.md")
    p.add_argument("--rtp-map", metavar="FILE", help="JSON file mapping SSRCs to rooms and "
                   "participants")
    p.add_argument("--profile", choices=sorted(PROFILES), help="default room profile")
    p.add_argument("--idle-timeout-s", type=_number(float, above=0),
                   help="drop rooms idle this long (300)")
    p.add_argument("--max-participants-per-room", type=int)
    p.add_argument("--max-participants", type=int, help="participants in all rooms together "
                   "(default 0: derived from the memory limit, cgroup-aware)")
    p.add_argument("--max-participants-per-tenant", type=int,
                   help="the same per tenant (default 0: as --max-participants)")
    p.add_argument("--max-rooms", type=int)
    p.add_argument("--max-ticks-per-batch", type=int)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--workers", type=int, help="processes sharing the port (1); worker i "
                   "serves metrics on metrics-port + i")
    p.add_argument("--redis-url", help="share decisions and room state through this Redis "
                   "(redis://host:port/db) for several replicas; see docs/scaling-out.md")
    p.add_argument("--redis-prefix", help="key prefix in Redis (speakerswitch)")
    sec = p.add_argument_group("security (see docs/security.md)")
    sec.add_argument("--insecure-no-auth", action="store_true", default=None,
                     help="accept calls without a token (local development only)")
    sec.add_argument("--jwt-secret-file", help="HS256 secret verifying tokens")
    sec.add_argument("--jwt-public-key-file", help="PEM public key verifying RS256/ES256 tokens")
    sec.add_argument("--tls-cert-file", help="serve TLS with this certificate chain")
    sec.add_argument("--tls-key-file", help="... and this private key")
    sec.add_argument("--tls-client-ca-file", help="require client certificates from this CA "
                     "(mutual TLS)")
    sec.add_argument("--insecure-http", action="store_true", default=None,
                     help="let the web viewer serve plain HTTP beyond loopback without TLS "
                     "(behind a TLS-terminating proxy)")


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run a recorded conversation through the engine",
                       description="Replay a conversation and write one JSON line per video "
                       "switch: {\"t_ms\": ..., \"speaker\": ...}.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--levels", metavar="CSV", help="t_ms,participant,level,voice rows")
    src.add_argument("--wav-dir", metavar="DIR", help="one mono 16-bit WAV per participant")
    src.add_argument("--rtp-pcap", metavar="PCAP", help="a captured call's RTP (pcap), "
                     "through the RTP ingest; needs --rtp-map")
    p.add_argument("--rtp-map", metavar="FILE", help="with --rtp-pcap: the SSRC map "
                   "(docs/rtp.md); --room picks a room when it maps several")
    p.add_argument("--events", metavar="JSONL", help="participant state changes: "
                   '{"t_ms": 1200, "participant": "p2", "video": false} per line (keys video, '
                   "muted, pinned, screen_share, join, leave)")
    p.add_argument("--out", required=True, metavar="FILE", help="decisions JSONL ('-': stdout)")
    p.add_argument("--server", metavar="HOST:PORT", type=_server_target,
                   help="send through a running server instead of the in-process engine")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help=f"tuning profile (default {DEFAULT_PROFILE})")
    for name, kind in TUNING_FLAGS.items():
        lo, hi = _tuning_range(name)
        p.add_argument("--" + name.replace("_", "-"), type=_number(kind, lo, hi), default=None,
                       help=f"override the profile's {name} ({lo:g}..{hi:g})")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                   help="who decides the floor (default speakerswitch; dsi and loudest are "
                   "the peers it is measured against)")
    p.add_argument("--room", help="room id (default: 'replay', or a fresh one with --server)")
    max_batch = config_mod.ServiceConfig.max_ticks_per_batch
    p.add_argument("--batch-ticks", type=_number(int, 1, max_batch), default=50,
                   help=f"ticks per request (50; 1..{max_batch})")
    p.add_argument("--connect-timeout-s", type=_number(float, above=0), default=10.0,
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
    c.add_argument("--algorithm", choices=["HS256", "RS256", "ES256"], default=None,
                   help="default: the key's (RS256 for an RSA private key PEM, ES256 for an "
                   "EC P-256 one, HS256 for a secret)")
    c.add_argument("--audience")
    c.add_argument("--issuer")


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="write the synthetic sample conversation",
                       description="Write a deterministic synthetic conversation: one WAV per "
                       "participant, levels.csv and truth.json.")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=_number(int, 0), default=1)
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
    from .tools.scenarios import MAX_SECONDS, MIN_SECONDS, TYPES, seconds_arg, variants_arg

    p = sub.add_parser("scenarios", help="write the evaluation scenarios",
                       description="Write deterministic multi-participant conversations with "
                       "ground truth (WAVs, levels.csv, truth.json per scenario).")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--types", default=",".join(TYPES), help="comma-separated subset")
    p.add_argument("--variants", type=variants_arg, default=3, help="seeds per type (3; >= 1)")
    p.add_argument("--seconds", type=seconds_arg, default=60.0,
                   help=f"length of each (60; {MIN_SECONDS:g}..{MAX_SECONDS:g})")


def _health_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="check a server's gRPC health (exit 0 if SERVING)",
                       description="A gRPC health check (grpc.health.v1), for container and "
                       "orchestrator probes: exit 0 when the server reports SERVING, else 1. "
                       "With --url, the same over the metrics port's plain HTTP /healthz "
                       "(what the image's HEALTHCHECK uses: it works when gRPC is TLS).")
    p.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT",
                   type=_server_target)
    p.add_argument("--service", default="", help="service name ('' = the whole server)")
    p.add_argument("--timeout-s", type=_number(float, above=0), default=3.0)
    p.add_argument("--tls-ca-file", help="connect with TLS, trusting this CA")
    p.add_argument("--tls-cert-file", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key-file", help="client key (mutual TLS)")
    p.add_argument("--url", metavar="URL", help="instead of gRPC, GET this plain HTTP URL: "
                   "the metrics port's /healthz (e.g. http://127.0.0.1:9100/healthz), which "
                   "answers 200 while serving and 503 while draining, whether gRPC is TLS "
                   "or not")


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
    from .demo import live as demo

    if not (a.speed > 0 and math.isfinite(a.speed)):
        return _fail("demo", f"--speed must be > 0 (and finite), got {a.speed}")
    try:
        cfg = demo.demo_config(a.host, a.port, a.http_port, a.metrics_port)
    except ValueError as e:
        print(f"speakerswitch demo: {e}", file=sys.stderr)
        return 2
    # the demo's metrics listen on 127.0.0.1 whatever --host says
    host_flags = {"port": "--host", "metrics_port": None, "http_port": "--host"}
    problem = _listen_problem(cfg, host_flags)
    if problem:
        return _fail("demo", problem)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo.run(cfg, a.speed, open_browser=not a.no_browser))
    except ValueError as e:
        print(f"speakerswitch demo: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:  # a port taken since we looked
        if isinstance(e, RuntimeError) and "bind" not in str(e):
            raise
        return _fail("demo", _start_failure(cfg, host_flags, e))
    return 0


def _version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" when run from a
    tree that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("speakerswitch")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="speakerswitch", description=__doc__)
    ap.add_argument("--version", action="version", version=f"speakerswitch {_version()}")
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


# --- listeners: a port that cannot be bound is named before anything starts ------------------

def _bind_error(host: str, port: int, udp: bool = False) -> OSError | None:
    """Why nothing can listen on ``host:port`` (None: something can), found by binding a
    plain socket as the servers bind theirs: SO_REUSEADDR (gRPC, aiohttp and
    prometheus_client all set it, so a port in TIME_WAIT is not called busy), and not
    SO_REUSEPORT (so `--workers` never joins another deployment's port by accident)."""
    import socket

    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port,
                                   type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:  # socket.gaierror: an unknown host name
        return e if isinstance(e, OSError) else OSError(str(e))
    error = None
    for family, kind, proto, _name, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(addr)
                if not udp:
                    s.listen()
            return None  # gRPC and prometheus_client are content with one address of several
        except OSError as e:
            error = error or e
    return error


SERVE_HOST_FLAGS = {"port": "--host", "metrics_port": "--metrics-host",
                    "http_port": "--http-host", "rtp_port": "--rtp-host"}


def _listen_problem(cfg, host_flags: dict[str, str | None]) -> str | None:
    """The first listener of ``cfg`` (each worker's too) that cannot be bound, as one line:
    the flag, the address, the reason and what to do. ``host_flags``: the flag setting the
    host of "port", "metrics_port" and "http_port"."""
    listeners = [("port", cfg.host, cfg.port, None)]
    for name, host in (("metrics_port", cfg.metrics_host), ("http_port", cfg.http_host)):
        port = getattr(cfg, name)
        if port > 0 and cfg.workers > 1:   # worker i listens on port + i
            listeners += [(name, host, port + i, i) for i in range(cfg.workers)]
        elif port >= 0:
            listeners.append((name, host, port, None))
    if getattr(cfg, "rtp_port", -1) >= 0:
        listeners.append(("rtp_port", cfg.rtp_host, cfg.rtp_port, None))
    for name, host, port, worker in listeners:
        e = _bind_error(host, port, udp=name == "rtp_port")
        if e is not None:
            return _listen_line(cfg, host_flags, name, host, port, worker, e)
    return None


def _listen_line(cfg, host_flags: dict[str, str | None], name: str, host: str, port: int,
                 worker: int | None, e: OSError) -> str:
    """'--port: cannot listen on 127.0.0.1:50051 (address already in use); what to do'."""
    import errno
    import socket

    flag, host_flag = "--" + name.replace("_", "-"), host_flags.get(name)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    who = "" if worker is None else f"worker {worker} "
    if isinstance(e, socket.gaierror):
        reason = f"unknown host: {e.strerror.lower()}" if e.strerror else "unknown host"
    else:
        reason = os.strerror(e.errno).lower() if e.errno else str(e)
    line = f"{flag}: {who}cannot listen on {where} ({reason})"
    if e.errno == errno.EADDRINUSE:
        if worker is not None:
            hint = (f"worker i listens on {flag} + i: choose another {flag}, or 0 for "
                    "any free ports")
        elif name == "port" and cfg.workers > 1:
            hint = f"the workers share it: choose another {flag}"
        else:
            hint = f"use {flag} 0 for any free port"
        return f"{line}; is another server running? {hint}"
    if e.errno == errno.EACCES:
        return f"{line}; ports below 1024 need privileges: use {flag} 1024 or above"
    if host_flag and (isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL):
        return (f"{line}; {host_flag} must be an address of this machine (127.0.0.1: "
                "this machine only, 0.0.0.0: every interface)")
    return line


def _start_failure(cfg, host_flags: dict[str, str | None], e: Exception) -> str:
    """One line for a server that failed to start after _listen_problem found its ports
    free (one was taken meanwhile), or for another start failure (Redis unreachable)."""
    import errno

    if isinstance(e, RuntimeError):  # gRPC's "Failed to bind to address ...": its port
        why = _bind_error(cfg.host, cfg.port) or OSError(0, "gRPC could not bind it")
        return _listen_line(cfg, host_flags, "port", cfg.host, cfg.port, None, why)
    if isinstance(e, OSError) and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL,
                                               errno.EACCES):
        # aiohttp (the viewer) says "error while attempting to bind on address ...";
        # prometheus_client (metrics) only gives the errno
        name = ("http_port" if "attempting to bind" in str(e) else
                "rtp_port" if "rtp_port" in str(e) else "metrics_port")
        host = {"http_port": cfg.http_host, "rtp_port": cfg.rtp_host}.get(name,
                                                                          cfg.metrics_host)
        return _listen_line(cfg, host_flags, name, host, getattr(cfg, name), None, e)
    return _one_line(str(e))


def _rtp_map_problem(cfg) -> str | None:
    """--rtp-map that cannot be read or is not a map: one line naming the entry and field."""
    if not cfg.rtp_map:
        return None
    from .runtime.rtp_ingest import load_map

    try:
        load_map(cfg.rtp_map)
    except ValueError as e:
        return f"--rtp-map: {_one_line(str(e))}"
    return None


def _verifies_tokens(key: bytes) -> bool:
    """Whether PyJWT takes ``key`` as an RS256 or ES256 verifying key (as the server will)."""
    import jwt
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    for alg in (RSAAlgorithm(RSAAlgorithm.SHA256), ECAlgorithm(ECAlgorithm.SHA256)):
        try:
            alg.prepare_key(key)
            return True
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
    return False


def _file_settings_problem(cfg) -> str | None:
    """A key or certificate setting naming a file that cannot serve: one line naming the flag
    (checked before start, so the server never half-starts)."""
    for name in ("jwt_secret_file", "jwt_public_key_file", "tls_cert_file", "tls_key_file",
                 "tls_client_ca_file"):
        path = getattr(cfg, name)
        if not path:
            continue
        flag = "--" + name.replace("_", "-")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            return f"{flag}: {_os_error(e)}"
        if not data.strip():
            return f"{flag}: {path} is empty"
        if name == "jwt_public_key_file" and not _verifies_tokens(data):
            return f"{flag}: {path} is not an RSA or EC public key (PEM)"
        if name.startswith("tls_"):
            problem = _tls_pem_problem(name, data)
            if problem:
                return f"{flag}: {path} {problem}"
    if cfg.tls_cert_file and not _tls_pair_fits(cfg.tls_cert_file, cfg.tls_key_file):
        return (f"--tls-key-file: {cfg.tls_key_file} is not the key of the certificate in "
                f"--tls-cert-file {cfg.tls_cert_file}")
    return None


def _tls_pem_problem(name: str, data: bytes) -> str | None:
    """What is wrong with a TLS file for gRPC (which would only say "failed to bind")."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if name == "tls_key_file":
            serialization.load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_certificates(data)
    except TypeError:
        return "is encrypted: give the key without a passphrase"
    except ValueError:
        return ("is not a PEM private key" if name == "tls_key_file"
                else "is not a PEM certificate")
    return None


def _tls_pair_fits(cert_file: str, key_file: str) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def cmd_serve(a: argparse.Namespace) -> int:
    keys = ["host", "port", "metrics_host", "metrics_port", "http_host", "http_port",
            "rtp_host", "rtp_port", "rtp_map", "profile", "idle_timeout_s",
            "max_participants_per_room", "max_participants", "max_participants_per_tenant",
            "max_rooms", "max_ticks_per_batch", "log_level",
            "insecure_no_auth", "jwt_secret_file", "jwt_public_key_file", "tls_cert_file",
            "tls_key_file", "tls_client_ca_file", "insecure_http", "workers", "redis_url",
            "redis_prefix"]
    try:
        cfg = config_mod.load({k: getattr(a, k) for k in keys}, a.config)
    except OSError as e:
        return _fail("serve", f"--config: {_os_error(e)}")
    except ValueError as e:
        return _fail("serve", str(e))
    problem = (_file_settings_problem(cfg) or _rtp_map_problem(cfg)
               or _listen_problem(cfg, SERVE_HOST_FLAGS))
    if problem:
        return _fail("serve", problem)
    if cfg.workers > 1:
        return _serve_workers(cfg)
    return _serve_one(cfg)


def _serve_one(cfg) -> int:
    from .runtime.server import serve

    logging.basicConfig(level=cfg.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(cfg))
    except (OSError, RuntimeError) as e:
        # Redis unreachable, or a port taken since cmd_serve looked (gRPC says
        # RuntimeError "Failed to bind to address ..."): say so, no traceback
        if isinstance(e, RuntimeError) and "bind" not in str(e):
            raise
        return _fail("serve", _start_failure(cfg, SERVE_HOST_FLAGS, e))
    return 0


def _serve_worker(cfg) -> None:
    """A worker process: its exit code is _serve_one's (a process target's return value
    is lost)."""
    sys.exit(_serve_one(cfg))


def _serve_workers(cfg) -> int:
    """N processes on one port (SO_REUSEPORT: the kernel spreads connections); SIGTERM and
    SIGINT are passed on to every worker, and we exit when they all have. A worker that
    fails (a port taken since cmd_serve looked: it says which) stops the others: no
    deployment runs with fewer workers than asked for."""
    import dataclasses
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(cfg.workers):
        wcfg = dataclasses.replace(
            cfg, workers=1, reuse_port=True,
            metrics_port=cfg.metrics_port + i if cfg.metrics_port > 0 else cfg.metrics_port,
            http_port=cfg.http_port + i if cfg.http_port > 0 else cfg.http_port)
        p = ctx.Process(target=_serve_worker, args=(wcfg,), name=f"speakerswitch-worker-{i}")
        p.start()
        procs.append(p)

    def forward(signum, _frame):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    running = list(procs)
    while running:
        wait([p.sentinel for p in running])
        for p in [p for p in running if not p.is_alive()]:
            p.join()
            running.remove(p)
            if p.exitcode != 0:
                forward(signal.SIGTERM, None)
    codes = [p.exitcode for p in procs]
    return 0 if all(c == 0 for c in codes) else 2 if 2 in codes else 1


def cmd_replay(a: argparse.Namespace) -> int:
    from .tools import replay

    room_config = pb.RoomConfig(profile=a.profile or "", algorithm=a.algorithm or "")
    for name in TUNING_FLAGS:
        value = getattr(a, name)
        if value is not None:
            setattr(room_config, name, value)
    room_id = a.room or (replay.new_room_id() if a.server else "replay")
    problem = (("--rtp-map: needed with --rtp-pcap" if a.rtp_pcap and not a.rtp_map else None)
               or ("--rtp-map: only with --rtp-pcap" if a.rtp_map and not a.rtp_pcap else None)
               or ("--plot: not with --rtp-pcap" if a.rtp_pcap and a.plot else None)
               or (_plot_problem() if a.plot else None)
               or (_client_files_problem(a) if a.server else None))
    if problem:
        return _fail("replay", problem)
    t0 = time.perf_counter()
    try:
        truth = _read_truth(a.truth) if a.plot and a.truth else None  # before the work
        if a.rtp_pcap:
            room_id, ticks = replay.rtp_pcap_ticks(a.rtp_pcap, a.rtp_map, a.room)
        else:
            ticks = (replay.levels_ticks(a.levels, room_id) if a.levels
                     else replay.wav_ticks(a.wav_dir, room_id))
        requests = _with_progress(replay.requests(
            ticks, room_config, a.events, a.batch_ticks,
            warn=lambda m: print(f"speakerswitch replay: warning: {m}", file=sys.stderr)), t0)
        responses = (replay.run_remote(requests, a.server, a.connect_timeout_s,
                                       client_options(a)) if a.server
                     else replay.run_local(requests))
        decisions: list = []
        try:
            out_file = sys.stdout if a.out == "-" else open(a.out, "w")
        except OSError as e:
            return _fail("replay", f"--out: {_os_error(e)}")
        with contextlib.nullcontext(out_file) if a.out == "-" else out_file as out:
            n, _ = replay.write_switches(responses, out, decisions)
        if a.plot:
            _plot(a.plot, a.levels, a.wav_dir, decisions, truth)
    except OSError as e:
        return _fail("replay", _os_error(e))
    except ValueError as e:  # replay.InputError: a malformed input, named with its line
        return _fail("replay", str(e))
    except Exception as e:  # gRPC failures: say what failed, not a traceback
        import grpc

        if isinstance(e, grpc.RpcError):
            print(f"speakerswitch replay: server {a.server}: {e.code().name}: "
                  f"{_one_line(e.details())}",
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
    from .tools.progress import Progress

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


def _plot_problem() -> str | None:
    """Why no picture can be drawn here (matplotlib missing), before any work is done."""
    from .tools import plot

    try:
        plot.require_matplotlib()
    except ImportError as e:
        return str(e)
    return None


def _read_truth(path: str) -> dict:
    from .tools.evaluate import read_truth

    return read_truth(path)


def _plot(png: str, levels_csv: str | None, wav_dir: str | None, decisions: list,
          truth: dict | None) -> None:
    import pathlib

    from .tools import plot

    if levels_csv:
        levels = plot.levels_by_participant(levels_csv)
    else:  # the levels a sender would report for these tracks
        from .tools.replay import read_wav
        from .tools.scenarios import levels_rows

        tracks, rate = {}, 16000
        for path in sorted(pathlib.Path(wav_dir).glob("*.wav")):
            rate, pcm = read_wav(path)
            tracks[path.stem] = np.frombuffer(pcm, "<i2") / 32768.0
        levels = plot.levels_from_rows(levels_rows(tracks, rate))
    plot.timeline(png, levels, decisions, truth, title=pathlib.Path(levels_csv or wav_dir).name)
    print(f"timeline -> {png}", file=sys.stderr)


def _watch_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="follow a room live in the terminal",
                       description="Follow one room: who is shown, the ranked speakers with "
                       "level bars, recent switches; refreshed in place on a terminal, one "
                       "line per switch otherwise.")
    p.add_argument("room")
    p.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT",
                   type=_server_target)
    p.add_argument("--wait", action="store_true", help="wait for the room to appear")
    p.add_argument("--max-events", type=_number(int, 0), default=0,
                   help="stop after this many (0: never)")
    _client_args(p)


def cmd_watch(a: argparse.Namespace) -> int:
    import grpc

    from .client import Client
    from .tools.watch_view import RoomView

    problem = _client_files_problem(a)
    if problem:
        return _fail("watch", problem)
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
            print(f"speakerswitch watch: server {a.server}: {e.code().name}: "
                  f"{_one_line(e.details())}", file=sys.stderr)
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
    from .tools.evaluate import load_decisions

    problem = _plot_problem()
    if problem:
        return _fail("plot", problem)
    try:
        _plot(a.out, a.levels, None, load_decisions(a.decisions),
              _read_truth(a.truth) if a.truth else None)
    except OSError as e:
        return _fail("plot", _os_error(e))
    except ValueError as e:  # a malformed input (named), or --out of a format matplotlib lacks
        return _fail("plot", str(e).splitlines()[0] if str(e) else repr(e))
    return 0


def client_options(a: argparse.Namespace) -> dict:
    return dict(token=a.token, tls_ca_file=a.tls_ca_file, tls_cert_file=a.tls_cert_file,
                tls_key_file=a.tls_key_file)


def _client_files_problem(a: argparse.Namespace) -> str | None:
    """A --tls-* file of a client command that cannot be read, or a --token gRPC would
    refuse as metadata (after printing its own noise): one line naming the flag."""
    token = getattr(a, "token", None)
    if token and not all(33 <= ord(c) <= 126 for c in token):
        return ("--token: not a bearer token (printable ASCII without spaces; from "
                "$SPEAKERSWITCH_TOKEN if not given)")
    if a.tls_key_file and not a.tls_cert_file or a.tls_cert_file and not a.tls_key_file:
        return "--tls-cert-file and --tls-key-file go together (mutual TLS)"
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(a, name)
        if path:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                return f"--{name.replace('_', '-')}: {_os_error(e)}"
            if b"-----BEGIN" not in data:
                return f"--{name.replace('_', '-')}: {path} is not PEM (-----BEGIN ...)"
    return None


def cmd_token(a: argparse.Namespace) -> int:
    from .runtime.auth import create_token, key_algorithm, parse_duration

    if not 1 <= len(a.tenant.encode()) <= 128:  # what the server accepts (auth.principal_...)
        return _fail("token", f"--tenant: must be 1..128 bytes, got {len(a.tenant.encode())}")
    try:
        with open(a.key, "rb") as f:
            key = f.read()
    except OSError as e:
        return _fail("token", f"--key: {_os_error(e)}")
    try:
        algorithm, what = key_algorithm(key)
    except ValueError as e:
        return _fail("token", f"--key: {a.key} is {e}")
    if a.algorithm and a.algorithm != algorithm:
        return _fail("token", f"--algorithm {a.algorithm}: --key {a.key} is {what}, which "
                     f"signs {algorithm} (leave --algorithm out to use it)")
    if algorithm == "HS256":
        key = key.strip()
        if not key:
            return _fail("token", f"--key: {a.key} is empty (an HS256 secret: 32 random "
                         "bytes or more)")
    try:
        ttl_s = parse_duration(a.ttl)
        if not 0 < ttl_s < 100 * 365 * 86400:  # also NaN; years of it overflow exp
            raise ValueError(f"{a.ttl!r} is not between 0 and 100 years")
    except ValueError as e:
        return _fail("token", f"--ttl: {e}")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            token = create_token(key, a.tenant,
                                 [g.strip() for g in a.grant.split(",") if g.strip()],
                                 ttl_s, a.rooms, algorithm, audience=a.audience,
                                 issuer=a.issuer)
        except ValueError as e:
            return _fail("token", f"--grant: {e}")
    for w in caught:  # PyJWT's: a short HS256 secret (one line, not its source location)
        print(f"speakerswitch token: warning: --key {a.key}: {w.message}", file=sys.stderr)
    print(token)
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if a.url:  # the image's HEALTHCHECK: plain HTTP, no gRPC client to load
        return _health_over_http(a.url, a.timeout_s)
    from .client import Client

    problem = _client_files_problem(a)
    if problem:
        return _fail("health", problem)
    with Client(a.server, tls_ca_file=a.tls_ca_file, tls_cert_file=a.tls_cert_file,
                tls_key_file=a.tls_key_file) as c:
        try:
            reply = health_pb2_grpc.HealthStub(c.channel).Check(
                health_pb2.HealthCheckRequest(service=a.service), timeout=a.timeout_s)
        except grpc.RpcError as e:
            print(f"{a.server}: {e.code().name}: {_one_line(e.details())}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{a.server}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _health_over_http(url: str, timeout_s: float) -> int:
    import urllib.error
    import urllib.request

    if not url.startswith("http://"):
        return _fail("health", f"--url {url}: a plain http:// URL (the metrics port's /healthz)")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            status, body = r.status, r.read(64)
    except urllib.error.HTTPError as e:  # 503 while draining
        status, body = e.code, e.read(64)
    except (OSError, ValueError) as e:
        print(f"{url}: {_one_line(str(getattr(e, 'reason', e)))}", file=sys.stderr)
        return 1
    print(f"{url}: {status} {_one_line(body.decode('latin-1').strip())}")
    return 0 if status == 200 else 1


def cmd_sample(a: argparse.Namespace) -> int:
    import pathlib

    from .tools.sample import write_sample

    if pathlib.Path(a.out).exists() and not pathlib.Path(a.out).is_dir():
        return _fail("sample", f"--out: {a.out} is a file, not a directory")
    try:
        pathlib.Path(a.out).mkdir(parents=True, exist_ok=True)  # fail before any work
        truth = write_sample(a.out, seed=a.seed, rate=a.rate)
    except OSError as e:  # an unwritable --out
        return _fail("sample", f"--out: {_os_error(e)}")
    print(f"wrote {a.out}: {len(truth['participants'])} participants, "
          f"{truth['duration_ms'] / 1000:.0f} s, {len(truth['changes'])} floor changes",
          file=sys.stderr)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    import json
    import pathlib

    from .tools import evaluate as ev

    try:
        if pathlib.Path(a.truth).is_dir():
            from .tools.progress import Progress

            if not pathlib.Path(a.decisions).is_dir():
                return _fail("evaluate", f"--decisions: {a.decisions} is not a directory "
                             "(with a --truth directory: DECISIONS/<scenario>.jsonl)")
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
        truth = ev.read_truth(a.truth)
        sc = ev.score(truth, ev.load_decisions(a.decisions))
    except OSError as e:
        return _fail("evaluate", _os_error(e))
    except ValueError as e:  # a malformed input: named by read_truth and load_decisions
        return _fail("evaluate", str(e))
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
    from .tools import scenarios

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
