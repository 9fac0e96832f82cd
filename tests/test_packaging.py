"""Packaging (issue 18 item 6): what `pip install speakerswitch` pulls is what `serve` needs.

scipy (~145 MB installed) and grpcio-tools are extras (synth, codegen): a server started with
both made unimportable still serves. protobuf is declared (the generated code imports it
directly), grpcio is a range from the generated code's own floor, and LICENSE matches
``license =``.

The wheel is built here from what the Dockerfile's build stage copies, as it builds it: it
ships the .proto and the LICENSE, its run-time requirements leave the extras out, their
installed size stays under the issue's 150 MB, and deploy/docker/requirements.lock pins
exactly their closure with hashes.
"""
import email.parser
import importlib.metadata
import os
import pathlib
import re
import shutil
import site
import socket
import subprocess
import sys
import time
import tarfile
import tomllib
import urllib.request
import venv
import zipfile

import grpc
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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


# --- the wheel as the image builds it (deploy/docker/Dockerfile), without a Docker daemon

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
LOCK = ROOT / "deploy" / "docker" / "requirements.lock"
INSTALLED_TARGET_BYTES = 150_000_000
"""Issue 18: `pip install speakerswitch` serves with at most 150 MB of installed packages."""


def _build_stage_copies() -> list[str]:
    from test_deploy import dockerfile_stages

    return [src for op, arg in dockerfile_stages(DOCKERFILE)[0]
            if op == "COPY" and not arg.startswith("--") for src in arg.split()[:-1]]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> pathlib.Path:
    """Exactly what the Dockerfile's build stage copies, laid out as it lays it out."""
    src = tmp_path_factory.mktemp("context")
    for rel in _build_stage_copies():
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, src / rel, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so", "*.pyc"))
        else:
            shutil.copy(ROOT / rel, src / pathlib.Path(rel).name)
    return src


def _pip_wheel(src: pathlib.Path, out: pathlib.Path, name: str) -> pathlib.Path:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob(f"{name}-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel(context, tmp_path_factory) -> pathlib.Path:
    """The wheel built from the build stage's copy with its `pip wheel --no-deps
    --no-build-isolation` (setuptools from the venv, as from the lock)."""
    return _pip_wheel(context, tmp_path_factory.mktemp("wheel"), "speakerswitch")


def _wheel_metadata(whl: pathlib.Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_the_wheel_ships_the_proto_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        # the path the proto's package gives it: `protoc -I <site-packages>/service/api`
        proto = z.read("service/api/speakerswitch/v1/speakerswitch.proto")
        lic = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert lic, names
        assert z.read(lic[0]) == (ROOT / "LICENSE").read_bytes()
    assert proto == (ROOT / "proto/speakerswitch/v1/speakerswitch.proto").read_bytes()
    assert b"package speakerswitch.v1;" in proto


def test_the_wheels_run_time_requirements_leave_out_scipy_and_grpcio_tools(wheel):
    meta = _wheel_metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    unconditional = [Requirement(r) for r in meta.get_all("Requires-Dist")
                     if "extra ==" not in r]
    names = {canonicalize_name(r.name) for r in unconditional}
    assert {"numpy", "grpcio", "protobuf", "aiohttp"} <= names, names
    for absent in ("scipy", "grpcio-tools", "matplotlib"):
        assert absent not in names, names


def _closure(requirements: list[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions `pip install` of these requirements pulls, following
    Requires-Dist with markers evaluated here (CPython 3.11 on Linux, as the image)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [(r, "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = importlib.metadata.distribution(req.name)
        if name in seen:
            new_extras = req.extras
        else:
            seen[name] = dist
            new_extras = req.extras | {""}
        for e in new_extras:
            todo += [(Requirement(r), e) for r in dist.requires or []]
    return seen


def _runtime_closure(wheel: pathlib.Path) -> dict[str, importlib.metadata.Distribution]:
    reqs = [Requirement(r) for r in _wheel_metadata(wheel).get_all("Requires-Dist")]
    return _closure([r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})])


def test_installed_packages_of_the_wheel_stay_under_150_mb(wheel):
    """The size on disk of every file of the run-time closure as installed in this venv
    (RECORD, .pyc included) plus the wheel's own files. This venv's versions stand in for a
    fresh install's; `pip install` of the wheel into a fresh venv measured 134 MB
    (docs/deploy.md)."""
    closure = _runtime_closure(wheel)
    sizes = {}
    for name, dist in closure.items():
        sizes[name] = sum(os.path.getsize(dist.locate_file(f)) for f in dist.files or []
                          if os.path.isfile(dist.locate_file(f)))
    with zipfile.ZipFile(wheel) as z:
        sizes["speakerswitch"] = sum(i.file_size for i in z.infolist())
    total = sum(sizes.values())
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    assert "scipy" not in sizes and "grpcio-tools" not in sizes, sorted(sizes)
    assert sizes["numpy"] > 10_000_000, "the sizes are not being read"
    assert total <= INSTALLED_TARGET_BYTES, (total, biggest)


def _lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    text = re.sub(r"\\\n\s*", " ", text)
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req, *opts = line.split()
        name, _, version = req.partition("==")
        assert version, f"not pinned: {line}"
        assert all(o.startswith("--hash=sha256:") and len(o) == 14 + 64 for o in opts), line
        out[canonicalize_name(name)] = (version, [o[len("--hash=sha256:"):] for o in opts])
    return out


def test_the_image_lock_pins_the_run_time_closure_with_hashes(wheel):
    locked = _lock_entries(LOCK.read_text())
    closure = _runtime_closure(wheel)
    assert set(locked) == set(closure) - {"speakerswitch"}, (
        "deploy/docker/requirements.lock is not the run-time closure: rerun "
        "deploy/docker/lock.sh", sorted(set(locked) ^ set(closure)))
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}: no hash"
    # every pin satisfies every range that asks for it (the wheel's and its dependencies')
    wants = [Requirement(r) for r in _wheel_metadata(wheel).get_all("Requires-Dist")]
    for dist in closure.values():
        wants += [Requirement(r) for r in dist.requires or []]
    for req in wants:
        name = canonicalize_name(req.name)
        if name in locked and (req.marker is None or req.marker.evaluate({"extra": ""})):
            assert req.specifier.contains(locked[name][0], prereleases=True), (req, locked[name])
    build = _lock_entries((LOCK.parent / "requirements-build.lock").read_text())
    setuptools_floor = [r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())
                        ["build-system"]["requires"] if r.startswith("setuptools")]
    assert Requirement(setuptools_floor[0]).specifier.contains(build["setuptools"][0])


def test_the_dockerfile_installs_only_what_the_locks_hold():
    from test_deploy import dockerfile_stages

    build, run = dockerfile_stages(DOCKERFILE)[0], dockerfile_stages(DOCKERFILE)[-1]
    runs = [arg for op, arg in build if op == "RUN"]
    assert any("--require-hashes -r requirements-build.lock" in a for a in runs), runs
    assert any("download" in a and "--require-hashes" in a and "-r requirements.lock" in a
               for a in runs), runs
    assert any("pip wheel" in a and "--no-deps" in a and "--no-build-isolation" in a
               for a in runs), runs
    installs = [arg for op, arg in run if op == "RUN" and "pip install" in arg]
    assert installs and all("--no-index" in a for a in installs), installs
    copies = [arg for op, arg in run if op == "COPY" and not arg.startswith("--from")]
    assert any(a.split()[0] == "LICENSE" for a in copies), copies


def _fresh_venv(env_dir: pathlib.Path) -> pathlib.Path:
    """A venv without this project: its dependencies are reached through a .pth to this
    venv's site-packages (as the image has them from the lock). A .pth line only adds the
    directory to sys.path, so this venv's editable installs (of the service and of
    clients/python, whose finders are .pth files there) are not seen."""
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    (pathlib.Path(purelib) / "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    return py


def _pip(py: pathlib.Path, *args: str, cwd: pathlib.Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), *args, "-q"],
                       capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_installed_wheel_serves_outside_the_checkout(wheel, tmp_path):
    """The image's install step: the wheel alone into a fresh venv (`pip install --no-deps
    --no-index`), then run from outside the checkout: the package comes from the venv, its C
    extensions, web pages, demo data and .proto are there, `serve` answers /healthz, and the
    commands that use the blocking client (`health` over gRPC, as `watch`, `demo` and
    `replay --server` do) run: the wheel carries the client package's sources
    (service._client), not a requirement the service's install leaves out."""
    env_dir = tmp_path / "venv"
    py = _fresh_venv(env_dir)
    _pip(py, "install", "--no-deps", "--no-index", str(wheel), cwd=tmp_path)
    probe = ("import service, dsp._kernel, service.runtime._wire, importlib.resources as r\n"
             "api = r.files('service.api')\n"
             "print(service.__file__)\n"
             "print(api.joinpath('speakerswitch/v1/speakerswitch.proto').is_file(),\n"
             "      r.files('service.runtime.web').joinpath('static').is_dir(),\n"
             "      any(r.files('service.demo').joinpath('data').iterdir()))\n")
    r = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, present = r.stdout.splitlines()
    assert where.startswith(str(env_dir)), where          # not the checkout's service/
    assert present == "True True True", present
    # the client is the wheel's own copy: nothing of this checkout or this venv leaks in
    r = subprocess.run([py, "-c", "import service.client, speakerswitch_client"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "No module named 'speakerswitch_client'" in r.stderr, r.stderr
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, mport = ports
    cli = env_dir / "bin" / "speakerswitch"
    proc = subprocess.Popen([cli, "serve", "--insecure-no-auth", "--port", str(port),
                             "--metrics-port", str(mport)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{mport}/healthz", timeout=2) as h:
                    status = h.status
            except OSError:
                time.sleep(0.2)
        assert status == 200
        for probe in (["--url", f"http://127.0.0.1:{mport}/healthz"],  # the HEALTHCHECK's
                      ["--server", f"127.0.0.1:{port}"]):             # through service.client
            r = subprocess.run([cli, "health", *probe, "--timeout-s", "10"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "Traceback" not in r.stderr, (probe, r.stdout, r.stderr)
        assert r.stdout.strip() == f"127.0.0.1:{port}: SERVING", r.stdout
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory) -> pathlib.Path:
    """The client package's own wheel (clients/python), built from a copy of it."""
    src = tmp_path_factory.mktemp("client-src")
    shutil.copytree(ROOT / "clients" / "python", src, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
    return _pip_wheel(src, tmp_path_factory.mktemp("client-wheel"), "speakerswitch_client")


def test_the_service_and_the_client_wheel_install_side_by_side(wheel, client_wheel, tmp_path):
    """The service wheel carries the client's sources under its own name, so the two wheels
    share no file: installing the client wheel beside the service, then uninstalling it,
    leaves the service's client in place (a second top-level speakerswitch_client would be
    deleted with it), and the client wheel works on its own name meanwhile."""
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(client_wheel) as b:
        service_files = {n for n in a.namelist() if ".dist-info/" not in n}
        client_files = {n for n in b.namelist() if ".dist-info/" not in n}
    assert {"service/_client/sync.py", "service/_client/py.typed",
            "service/_client/api/speakerswitch_pb2.py", "service/_client/api/speakerswitch_pb2.pyi",
            "service/_client/api/speakerswitch_pb2_grpc.py"} <= service_files
    assert service_files.isdisjoint(client_files), service_files & client_files
    py = _fresh_venv(tmp_path / "venv")
    _pip(py, "install", "--no-deps", "--no-index", str(wheel), str(client_wheel), cwd=tmp_path)
    both = ("import service.client, speakerswitch_client.sync as s\n"
            "print(service.client.shard_of('room-7', 16) == s.shard_of('room-7', 16))")
    r = subprocess.run([py, "-c", both], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.stdout.strip() == "True", r.stderr
    _pip(py, "uninstall", "-y", "speakerswitch-client", cwd=tmp_path)
    r = subprocess.run([py, "-c", "import service.client; print(service.client.Client.__module__)"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.stdout.strip() == "service._client.sync", r.stderr


def test_a_wheel_built_from_the_sdist_carries_the_client_and_the_proto(context, tmp_path):
    """`pip install speakerswitch-0.1.0.tar.gz` builds from the sdist: it must hold the
    client package's sources (and its generated modules' stubs), as it holds the .proto."""
    out = tmp_path / "sdist"
    r = subprocess.run([sys.executable, "-c", "from setuptools import build_meta;"
                        f" build_meta.build_sdist({str(out)!r})"],
                       capture_output=True, text=True, timeout=300, cwd=context)
    assert r.returncode == 0, r.stdout + r.stderr
    (sdist,) = out.glob("speakerswitch-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    whl = _pip_wheel(tree, tmp_path / "wheel", "speakerswitch")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        assert z.read("service/_client/sync.py") == (
            ROOT / "clients/python/speakerswitch_client/sync.py").read_bytes()
    assert {"service/_client/py.typed", "service/_client/api/speakerswitch_pb2.pyi",
            "service/_client/api/speakerswitch_pb2_grpc.py",
            "service/api/speakerswitch/v1/speakerswitch.proto"} <= names, sorted(names)
