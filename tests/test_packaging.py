"""Packaging (issue 18 item 6): what `pip install speakerswitch` pulls is what `serve` needs.

scipy (~145 MB installed) and grpcio-tools are extras (synth, codegen): a server started with
both made unimportable still serves. protobuf is declared (the generated code imports it
directly), grpcio is a range from the generated code's own floor, and LICENSE matches
``license =``.
"""
import pathlib
import re
import socket
import subprocess
import sys
import tomllib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NOT_AT_RUN_TIME = ("scipy", "grpc_tools", "matplotlib")

# Run before service.cli: any import of the packages above fails as if they were not installed.
PRELUDE = f"""
import sys, importlib.abc
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_AT_RUN_TIME!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""


def _names(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", req)
        out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def test_runtime_dependencies_leave_out_what_serve_never_imports():
    deps = _names(PROJECT["dependencies"])
    assert "scipy" not in deps and "grpcio-tools" not in deps, deps
    extras = PROJECT["optional-dependencies"]
    assert "scipy" in _names(extras["synth"]) and "grpcio-tools" in _names(extras["codegen"])
    # make installs .[dev]: the tests still get both
    assert any(r.replace(" ", "").startswith("speakerswitch[") and "synth" in r and "codegen" in r
               for r in extras["dev"]), extras["dev"]


def test_protobuf_and_grpcio_ranges_hold_the_generated_code():
    deps = _names(PROJECT["dependencies"])
    gen = (ROOT / "service/api/speakerswitch_pb2.py").read_text()
    gen_grpc = (ROOT / "service/api/speakerswitch_pb2_grpc.py").read_text()
    pb_version = re.search(r"# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", gen).groups()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", gen_grpc).group(1)
    assert "protobuf" in deps, "the generated code imports google.protobuf: declare it"
    # ValidateProtobufRuntimeVersion: the same major, at least the generator's version
    assert f">={'.'.join(pb_version)}" in deps["protobuf"], deps["protobuf"]
    assert f"<{int(pb_version[0]) + 1}" in deps["protobuf"], deps["protobuf"]
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
        assert "==" not in deps[name], f"{name} pinned: {deps[name]}"
        assert f">={grpc_version}" in deps[name], (name, deps[name])


def test_license_file_matches_the_declared_license():
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_the_prelude_really_hides_the_extras():
    for name in NOT_AT_RUN_TIME:
        r = subprocess.run([sys.executable, "-c", PRELUDE + f"import {name}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (name, r.stderr)


def test_serve_runs_without_scipy_grpcio_tools_or_matplotlib():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = PRELUDE + (
        "import runpy\n"
        f"sys.argv = ['speakerswitch', 'serve', '--insecure-no-auth', '--port', '{port}',"
        " '--metrics-port', '-1']\n"
        "runpy.run_module('service.cli', run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out
