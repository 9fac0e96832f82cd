"""Kubernetes service-link variables never stop the server.

Kubernetes gives every pod, for every Service of its namespace, variables such as
SPEAKERSWITCH_SERVICE_HOST and SPEAKERSWITCH_PORT=tcp://10.96.0.10:50051 (for a Service
named speakerswitch). The config loader must not read them as settings, nor refuse them as
unknown ones; a typo in a real setting is still refused.
"""
import os
import pathlib
import re
import socket
import subprocess
import sys

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.runtime import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
HELM_RELEASE = "speakerswitch"


def services_in_deploy() -> dict[str, list[tuple[int, str]]]:
    """Every Service that deploy/ defines: name -> [(port, port name)]. Helm templates are
    read with the release named speakerswitch (their ``{{ }}`` parts replaced)."""
    found: dict[str, list[tuple[int, str]]] = {}
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        text = path.read_text()
        if "kind: Service" not in text:
            continue
        if "{{" in text:
            text = re.sub(r"\{\{-?\s*(\.Release\.Name|include \"speakerswitch\.fullname\" \.)"
                          r"\s*-?\}\}", HELM_RELEASE, text)
            text = re.sub(r"\{\{-?[^}]*\.port[^}]*-?\}\}", "50051", text)
            text = re.sub(r"^.*\{\{.*$\n?", "", text, flags=re.M)
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Service":
                ports = [(int(p.get("port", 0) or 0), str(p.get("name", "")))
                         for p in (doc.get("spec") or {}).get("ports") or []
                         if str(p.get("port", "")).isdigit()]
                found[doc["metadata"]["name"]] = ports
    return found


def kubelet_env(services: dict[str, list[tuple[int, str]]]) -> dict[str, str]:
    """The variables a kubelet sets for these Services (docker-links style)."""
    env: dict[str, str] = {}
    for k, (name, ports) in enumerate(sorted(services.items())):
        if not ports:
            continue
        prefix = name.upper().replace("-", "_")
        ip = f"10.96.0.{10 + k}"
        first = ports[0][0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first)
        env[f"{prefix}_PORT"] = f"tcp://{ip}:{first}"
        for port, port_name in ports:
            if port_name:
                env[f"{prefix}_SERVICE_PORT_{port_name.upper().replace('-', '_')}"] = str(port)
            base = f"{prefix}_PORT_{port}_TCP"
            env[base] = f"tcp://{ip}:{port}"
            env[f"{base}_PROTO"] = "tcp"
            env[f"{base}_PORT"] = str(port)
            env[f"{base}_ADDR"] = ip
    return env


def test_deploy_defines_services_named_like_the_settings():
    services = services_in_deploy()
    assert any(name.startswith("speakerswitch") for name in services), services
    env = kubelet_env(services)
    assert env.get("SPEAKERSWITCH_PORT", "").startswith("tcp://")


def test_service_links_are_not_settings():
    env = kubelet_env(services_in_deploy())
    env["SPEAKERSWITCH_TOKEN"] = "a client's token"
    base = config.load({"insecure_no_auth": True}, env={})
    assert config.load({"insecure_no_auth": True}, env=env) == base
    # real settings still apply beside them, and a typo is still refused
    env["SPEAKERSWITCH_MAX_ROOMS"] = "7"
    assert config.load({"insecure_no_auth": True}, env=env).max_rooms == 7
    with pytest.raises(ValueError, match="unknown setting SPEAKERSWITCH_MAX_ROOM\\b"):
        config.load({"insecure_no_auth": True}, env={**env, "SPEAKERSWITCH_MAX_ROOM": "7"})


def test_the_server_starts_in_a_pod_with_every_service_link():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEAKERSWITCH_")}
    env.update(kubelet_env(services_in_deploy()))
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
                             "--port", str(port), "--metrics-port", "-1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out and "unknown setting" not in out, out
