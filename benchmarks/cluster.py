"""A scale-out deployment on loopback, for the scale-out tests and benchmark: Redis, N
``speakerswitch serve`` replicas sharing it, and nginx in front running the shipped
``deploy/nginx/nginx.conf`` with loopback addresses. Everything is a child process that
``Cluster.close`` stops; nothing outlives it."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
READY_TIMEOUT_S = 30.0


def find_tool(name: str) -> str | None:
    """Debian puts nginx in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


def missing_tools() -> list[str]:
    return [t for t in ("redis-server", "nginx") if find_tool(t) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (OSError, grpc.RpcError, grpc.FutureTimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.05)


def render_nginx_conf(listen_port: int, replica_ports: list[int], workdir: pathlib.Path) -> str:
    """The shipped configuration with loopback replicas, port and paths."""
    conf = NGINX_CONF.read_text()
    servers = re.findall(r"^\s*server speakerswitch-\d+\S*.*$", conf, re.M)
    if not servers:
        raise ValueError(f"{NGINX_CONF}: no 'server speakerswitch-N...' lines to replace")
    options = servers[0].split(None, 2)[2]  # e.g. "max_fails=1 fail_timeout=10s;"
    upstream = "\n".join(f"        server 127.0.0.1:{p} {options}" for p in replica_ports)
    conf = conf.replace(servers[0], upstream, 1)
    for line in servers[1:]:
        conf = conf.replace(line + "\n", "", 1)
    conf = re.sub(r"listen \d+ http2;", f"listen 127.0.0.1:{listen_port} http2;", conf)
    conf = re.sub(r"^pid .*;$", f"pid {workdir / 'nginx.pid'};", conf, flags=re.M)
    conf = re.sub(r"^error_log .*;$", f"error_log {workdir / 'nginx-error.log'} warn;", conf,
                  flags=re.M)
    temp = "\n".join(f"    {k}_temp_path {workdir / k};"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return conf.replace("http {\n", "http {\n" + temp + "\n", 1)


class Replica:
    def __init__(self, index: int, redis_url: str, workdir: pathlib.Path,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.index = index
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = workdir / f"replica-{index}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
             "--port", str(self.port), "--metrics-port", str(self.metrics_port),
             "--redis-url", redis_url, *extra_args],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        def serving() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited: {self.log_path.read_text()}")
            with grpc.insecure_channel(self.target) as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=1)
                return r.status == health_pb2.HealthCheckResponse.SERVING
        _wait(serving, f"replica {self.index}")

    def metric(self, name: str) -> float:
        """A sample of this replica's /metrics (0 if absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye, as a crashed machine."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Cluster:
    """``with Cluster(tmp_path, replicas=3) as c:`` Redis + replicas + nginx on loopback."""

    def __init__(self, workdir: pathlib.Path, replicas: int = 3,
                 replica_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.n_replicas = replicas
        self.replica_args = replica_args
        self.redis_sock = workdir / "redis.sock"
        self.redis_url = f"unix://{self.redis_sock}"
        self.proxy_port = free_port()
        self.replicas: list[Replica] = []
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Cluster":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        wd = self.workdir
        redis_log = open(wd / "redis.log", "w")
        self._procs.append(subprocess.Popen(
            [find_tool("redis-server"), "--port", "0", "--unixsocket", str(self.redis_sock),
             "--save", "", "--appendonly", "no", "--dir", str(wd)],
            stdout=redis_log, stderr=subprocess.STDOUT))
        _wait(self.redis_sock.exists, "redis-server")
        self.replicas = [Replica(i, self.redis_url, wd, self.replica_args)
                         for i in range(self.n_replicas)]
        for r in self.replicas:
            r.wait_ready()
        conf = wd / "nginx.conf"
        conf.write_text(render_nginx_conf(self.proxy_port, [r.port for r in self.replicas], wd))
        nginx_log = open(wd / "nginx.log", "w")
        self._procs.append(subprocess.Popen(
            [find_tool("nginx"), "-c", str(conf), "-p", str(wd), "-g", "daemon off;"],
            stdout=nginx_log, stderr=subprocess.STDOUT))

        def proxied() -> bool:
            with grpc.insecure_channel(self.proxy_target) as ch:
                grpc.channel_ready_future(ch).result(timeout=1)
                return True
        _wait(proxied, "nginx")

    @property
    def proxy_target(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def owners(self) -> list[int]:
        """Rooms in memory per live replica."""
        return [int(r.metric("speakerswitch_rooms")) if r.proc.poll() is None else 0
                for r in self.replicas]

    def close(self) -> None:
        for r in self.replicas:
            r.close()
        for p in reversed(self._procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
