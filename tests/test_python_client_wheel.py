"""The client package builds as a wheel that requires grpcio and protobuf only, and works in
a fresh virtual environment that has nothing else (no numpy, no server), against a real
server. Offline: the fresh environment gets this venv's own grpcio and protobuf (and
grpcio's typing-extensions) linked in, and pip installs the wheel with --no-index."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ServerThread, test_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOWED = {"grpcio", "protobuf"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    src = tmp_path_factory.mktemp("src") / "python"
    # built from a copy: setuptools leaves build/ and *.egg-info behind in the source tree
    shutil.copytree(ROOT / "clients" / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("speakerswitch_client-*.whl")
    return whl


def test_the_wheel_requires_grpcio_and_protobuf_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    assert {r.split("<")[0].split(">")[0].split("=")[0].strip() for r in requires} == ALLOWED
    assert "Name: speakerswitch-client" in meta
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"speakerswitch_client"}, tops  # neither service nor dsp
    assert "speakerswitch_client/api/speakerswitch_pb2.py" in names


def _link_installed(site: pathlib.Path, names: list[str]) -> None:
    """Make ``names`` (paths relative to this venv's site-packages) present in ``site``."""
    ours = pathlib.Path(sysconfig.get_paths()["purelib"])
    for name in names:
        matches = list(ours.glob(name))
        assert matches, name
        for m in matches:
            target = site / m.relative_to(ours)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(m, target_is_directory=m.is_dir())


def test_it_installs_and_runs_in_a_fresh_venv_with_only_its_dependencies(wheel, tmp_path):
    env = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    py = env / "bin" / "python"
    site = pathlib.Path(subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    _link_installed(site, ["grpc", "grpcio-*.dist-info", "google/protobuf", "google/_upb",
                           "protobuf-*.dist-info", "typing_extensions.py",
                           "typing_extensions-*.dist-info"])
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                        "--no-index", "-q", str(wheel)], capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr  # would fail resolving any other requirement
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "list",
                             "--format=freeze"], capture_output=True, text=True, check=True)
    installed = {line.split("==")[0].lower().replace("_", "-")
                 for line in listed.stdout.split()}
    assert installed == {"speakerswitch-client", "grpcio", "protobuf", "typing-extensions"}
    code = """
import asyncio, importlib.util, sys
from speakerswitch_client import SpeakerSwitchClient
assert importlib.util.find_spec("numpy") is None and importlib.util.find_spec("service") is None

async def main():
    shown = []
    async with SpeakerSwitchClient(sys.argv[1], auto_flush=False) as ss:
        ss.on_switch = lambda room, sw: shown.append(sw.speaker_id)
        for t in range(0, 2000, 20):
            talker = "alice" if t < 800 else "bob"
            for p in ("alice", "bob"):
                await ss.push_level("fresh", p, 25 if p == talker else 70, p == talker, t)
            await ss.flush()
    print(" ".join(shown))

asyncio.run(main())
# the blocking layer (service.client on the server's side) works from the wheel alone
from speakerswitch_client import pb
from speakerswitch_client.sync import Client
with Client(sys.argv[1]) as c, c.session() as s:
    tick = pb.RoomTick(room_id="fresh", timestamp_ms=2000, duration_ms=20)
    tick.audio.add(participant_id="bob", level=pb.AudioLevel(level=25))
    assert not s.send_ticks(tick).rejections
    print(c.get_room("fresh").speaker_id, c.get_room("fresh").timestamp_ms)
"""
    with ServerThread(test_config()) as server:
        r = subprocess.run([py, "-c", code, server.target], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["alice", "bob", "bob", "2020"]
