"""Probes when gRPC is TLS (issue 18 item 5): a kubelet's gRPC probe and the image's old
HEALTHCHECK speak plaintext gRPC, so a TLS server failed them forever. The metrics port (plain
HTTP) answers ``GET /healthz``: 200 while serving, 503 from the moment the drain starts, and
every probe in deploy/ (Kubernetes, Helm, the Dockerfile's HEALTHCHECK) uses it."""
import json
import pathlib
import re
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import speakerswitch_pb2 as pb
from service.api import speakerswitch_pb2_grpc as pb_grpc
from service.cli import main
from service.client import Client

from conftest import ServerThread, test_config
from test_deploy import dockerfile_stages
from test_security import pki  # noqa: F401  (the fixture: a CA, server and client certs)

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _mtls_config(pki):  # noqa: F811
    return test_config(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key"),
                       tls_client_ca_file=str(pki / "ca.pem"))


def test_healthz_serves_plain_http_while_grpc_is_mutual_tls(pki, capsys):  # noqa: F811
    with ServerThread(_mtls_config(pki)) as srv:
        healthz = f"http://127.0.0.1:{srv.running.metrics_port}/healthz"
        # what a kubelet's gRPC probe does: plaintext gRPC health; the TLS port refuses it
        with grpc.insecure_channel(srv.target) as ch:
            with pytest.raises(grpc.RpcError) as e:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert main(["health", "--server", srv.target, "--timeout-s", "3"]) == 1
        capsys.readouterr()
        assert _get(healthz) == (200, "SERVING\n")
        assert main(["health", "--url", healthz, "--timeout-s", "3"]) == 0
        assert capsys.readouterr().out.strip() == f"{healthz}: 200 SERVING"
        # /metrics is still /metrics
        status, body = _get(healthz.replace("/healthz", "/metrics"))
        assert status == 200 and "speakerswitch_build_info" in body


def test_healthz_says_not_serving_from_the_start_of_the_drain(pki, capsys):  # noqa: F811
    srv = ServerThread(_mtls_config(pki)).__enter__()
    healthz = f"http://127.0.0.1:{srv.running.metrics_port}/healthz"
    release = threading.Event()
    opened = threading.Event()

    def requests():  # a media server's stream that stays open: the drain waits for it
        yield pb.StreamRequest()
        opened.set()
        release.wait(30)

    def stream():
        with Client(srv.target, tls_ca_file=str(pki / "ca.pem"),
                    tls_cert_file=str(pki / "client.pem"),
                    tls_key_file=str(pki / "client.key")) as c:
            try:
                for _ in pb_grpc.SpeakerSwitchStub(c.channel).Stream(requests()):
                    pass
            except grpc.RpcError:
                pass

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert opened.wait(10)
        assert _get(healthz)[0] == 200
        import asyncio

        stopping = asyncio.run_coroutine_threadsafe(srv.running.stop(5), srv.loop)
        deadline = time.monotonic() + 4
        while _get(healthz)[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _get(healthz) == (503, "NOT_SERVING\n")
        assert main(["health", "--url", healthz, "--timeout-s", "3"]) == 1
        assert "503 NOT_SERVING" in capsys.readouterr().out
        assert not stopping.done(), "the drain ended before the check: nothing was shown"
    finally:
        release.set()
        t.join(10)
        stopping.result(30)
        srv.loop.call_soon_threadsafe(srv.loop.stop)
        srv.thread.join(30)


def test_health_url_refuses_anything_but_plain_http(capsys):
    assert main(["health", "--url", "https://127.0.0.1:9100/healthz"]) == 2
    assert "--url" in capsys.readouterr().err


def _server_containers():
    """(where, container, pod spec) of every speakerswitch container in deploy/."""
    for path in sorted(DEPLOY.rglob("*.yaml")):
        text = path.read_text()
        if "{{" in text:  # Helm: the lines with template actions dropped
            text = re.sub(r"^.*\{\{.*$\n?", "", text, flags=re.M)
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict) or doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            spec = doc["spec"]["template"]["spec"]
            for c in spec["containers"]:
                if c["name"] == "speakerswitch":
                    yield str(path.relative_to(ROOT)), c


def test_every_probe_in_deploy_uses_the_plain_http_healthz():
    seen = 0
    for where, c in _server_containers():
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports.get("metrics") == 9100, (where, ports)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c[kind]
            assert "grpc" not in probe and "exec" not in probe, (where, kind)
            assert probe["httpGet"] == {"path": "/healthz", "port": "metrics"}, (where, kind)
        seen += 1
    assert seen >= 3, seen  # single, scale-out, Helm


def test_the_image_healthcheck_uses_the_plain_http_healthz():
    final = dict(dockerfile_stages(DEPLOY / "docker" / "Dockerfile")[-1])
    cmd = final["HEALTHCHECK"].split("CMD", 1)[1].strip()
    argv = json.loads(cmd)
    assert argv[:2] == ["speakerswitch", "health"]
    url = argv[argv.index("--url") + 1]
    assert url == "http://127.0.0.1:9100/healthz"
    assert "9100" in final["EXPOSE"].split()
