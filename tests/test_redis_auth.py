"""Redis in the scale-out profile (issue 18 item 5): replicas restore room state from it, so
it requires a password (Secret speakerswitch-redis) and only the replicas may reach it.

The replica's environment is built from replicas.yaml the way a kubelet builds it (secret
references resolved, ``$(VAR)`` expanded from the variables above it), loaded by the real
config loader, and served against a real redis-server that requires the password; the
password never reaches the log or an error. The NetworkPolicy is checked against the pods'
labels; the spread of replicas and proxies over nodes is checked in the pod specs."""
import logging
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import time

import pytest
import redis
import yaml

from service.runtime import config
from service.api import speakerswitch_pb2 as pb
from service.client import Client

from conftest import ServerThread, script_levels

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCALEOUT = ROOT / "deploy" / "kubernetes" / "scaleout"
REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((SCALEOUT / name).read_text()) if d]


def _kind(name: str, kind: str) -> dict:
    (doc,) = [d for d in _docs(name) if d["kind"] == kind]
    return doc


def kubelet_env(container: dict, secrets_: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's env as the kubelet sets it: secretKeyRef resolved, then each value's
    $(NAME) replaced by a variable defined earlier in the list (later ones stay literal)."""
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets_[(ref["name"], ref["key"])]
        else:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: env.get(m.group(1), m.group(0)), e["value"])
    return env


def _expand_args(container: dict, env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                   a) for a in container.get("args") or []]


def test_redis_requires_the_secret_password_and_replicas_send_it():
    password = secrets.token_hex(32)
    secret = {("speakerswitch-redis", "password"): password,
              ("speakerswitch-jwt", "secret"): "x" * 32}
    (redis_c,) = _kind("redis.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    args = _expand_args(redis_c, kubelet_env(redis_c, secret))
    assert args[args.index("--requirepass") + 1] == password
    replica = _kind("replicas.yaml", "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    env = kubelet_env(replica, secret)
    cfg = config.load(env=env)
    assert cfg.redis_url == f"redis://:{password}@redis:6379/0"
    assert redis.connection.parse_url(cfg.redis_url)["password"] == password
    # the example Secret names what both read
    example = [d for d in yaml.safe_load_all((SCALEOUT.parent / "secret.example.yaml")
                                             .read_text()) if d]
    assert any(d["metadata"]["name"] == "speakerswitch-redis" and "password" in d["stringData"]
               for d in example)


def test_only_the_replicas_reach_redis():
    policy = _kind("redis.yaml", "NetworkPolicy")["spec"]
    redis_pod = _kind("redis.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    replica_pod = _kind("replicas.yaml", "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    proxy_pod = _kind("proxy.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items())

    assert selects(policy["podSelector"], redis_pod) and "Ingress" in policy["policyTypes"]
    (rule,) = policy["ingress"]
    peers = rule["from"]
    assert all(set(p) == {"podSelector"} for p in peers), "no namespace or IP-block peers"
    assert any(selects(p["podSelector"], replica_pod) for p in peers)
    for other in (proxy_pod, redis_pod, {"app.kubernetes.io/name": "speakerswitch"}):
        assert not any(selects(p["podSelector"], other) for p in peers), other
    (redis_c,) = _kind("redis.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [p["port"] for p in rule["ports"]] == [redis_c["ports"][0]["name"]]


def test_replicas_and_proxies_spread_over_nodes():
    for name, kind in (("replicas.yaml", "StatefulSet"), ("proxy.yaml", "Deployment")):
        tmpl = _kind(name, kind)["spec"]["template"]
        spread = tmpl["spec"]["topologySpreadConstraints"]
        by_key = {c["topologyKey"]: c for c in spread}
        assert "kubernetes.io/hostname" in by_key, name
        for c in spread:  # each counts this workload's own pods
            assert all(tmpl["metadata"]["labels"].get(k) == v
                       for k, v in c["labelSelector"]["matchLabels"].items()), (name, c)
            assert c["maxSkew"] == 1


@pytest.fixture
def redis_with_password(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server not installed (Debian package 'redis-server'; make test "
                    "installs it when it can)")
    password = secrets.token_hex(16)
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen([REDIS_SERVER, "--port", "0", "--unixsocket", str(sock),
                             "--save", "", "--appendonly", "no", "--requirepass", password],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists(), "redis-server did not start"
        yield sock, password
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_server_shares_through_a_redis_that_requires_a_password(redis_with_password, caplog):
    sock, password = redis_with_password
    url = f"unix://:{password}@{sock}?db=0"
    caplog.set_level(logging.INFO, logger="speakerswitch")
    cfg = config.load(overrides=dict(port=0, metrics_port=0, insecure_no_auth=True,
                                     redis_url=url, gc_interval_s=0.05), env={})
    with ServerThread(cfg) as srv, Client(srv.target) as c:
        c.wait_ready()
        list(c.stream([pb.StreamRequest(batch_id=1, ticks=script_levels(
            "auth-room", [("a", 0, 1000), ("b", 1500, 3000)], ["a", "b"], 3000))]))
        keys = redis.Redis(unix_socket_path=str(sock), password=password).keys("*auth-room*")
        assert keys, "nothing of the room reached Redis"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "decisions shared through unix://:***@" in logged, logged
    assert password not in logged


def test_a_wrong_password_stops_the_server_without_showing_it(redis_with_password):
    sock, password = redis_with_password
    wrong = secrets.token_hex(16)
    for url in (f"unix://:{wrong}@{sock}?db=0", f"unix://{sock}?db=0"):
        cfg = config.load(overrides=dict(port=0, metrics_port=-1, insecure_no_auth=True,
                                         redis_url=url), env={})
        with pytest.raises(OSError) as e:
            with ServerThread(cfg):
                pass
        message = str(e.value)
        assert message.startswith("redis_url: cannot reach unix://"), message
        assert wrong not in message and password not in message, message


def test_redacted_url():
    r = config.redacted_url
    assert r("redis://:s3cr%2Ft@redis:6379/0") == "redis://:***@redis:6379/0"
    assert r("redis://default:pw@h:1/0") == "redis://default:***@h:1/0"
    assert r("unix:///tmp/s.sock?db=0&password=abc") == "unix:///tmp/s.sock?db=0&password=***"
    assert r("redis://redis:6379/0") == "redis://redis:6379/0"
    assert r("rediss://user@h/0") == "rediss://user@h/0"
