"""The Node.js example (a user of the npm package, clients/node) against a real server: the
same decisions as the Python replay."""
import json
import pathlib
import shutil
import subprocess

import pytest

from service.cli import main
from test_node_package import packed

NODE_DIR = pathlib.Path(__file__).resolve().parent.parent / "examples" / "node"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.mark.skipif(NODE is None or NPM is None, reason="node/npm are not installed")
def test_node_client_streams_levels_and_prints_the_same_switches(sample_dir, server, tmp_path,
                                                                 tmp_path_factory):
    # the example as it is, with the package installed from the tarball `npm pack` made
    # (its package.json names the package's source folder, for a checkout)
    example = tmp_path / "example"
    example.mkdir()
    for name in ("client.js", "package.json"):
        shutil.copy(NODE_DIR / name, example / name)
    r = subprocess.run([NPM, "install", "--no-audit", "--no-fund", str(packed(tmp_path_factory))],
                       cwd=example, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([NODE, "client.js", "--server", server.target, "--levels",
                        str(sample_dir / "levels.csv"), "--room", "from-node"],
                       cwd=example, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    out = tmp_path / "py.jsonl"
    assert main(["replay", "--levels", str(sample_dir / "levels.csv"), "--out", str(out)]) == 0
    want = [json.loads(line) for line in out.read_text().splitlines()]
    keys = ("t_ms", "speaker", "previous", "reason")
    assert got and [{k: d[k] for k in keys} for d in got] == [{k: d[k] for k in keys} for d in want]
