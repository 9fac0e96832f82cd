"""Generate the protobuf/gRPC Python modules of ``proto/`` into ``service/api/``.

Run ``python -m service.tools.protogen`` (or ``make proto``). The output is committed, and
``tests/test_proto_generated.py`` fails when it is out of date with the ``.proto``. The same
modules go to the client-only package too (``clients/python/speakerswitch_client/api``).

grpcio-tools writes ``speakerswitch/v1/*_pb2*.py`` whose gRPC module imports the message
module by its proto path (``from speakerswitch.v1 import ...``); we place both under
``service.api`` and make that import relative, so no top-level ``speakerswitch`` package
is needed.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]  # service/tools/ -> the checkout
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = "speakerswitch/v1/speakerswitch.proto"
OUT_DIR = ROOT / "service" / "api"
# The client-only package (clients/python) ships the same modules, so that installing it
# pulls neither the server nor grpcio-tools.
CLIENT_OUT_DIR = ROOT / "clients" / "python" / "speakerswitch_client" / "api"
GENERATED = ("speakerswitch_pb2.py", "speakerswitch_pb2.pyi", "speakerswitch_pb2_grpc.py")
_ABSOLUTE_IMPORT = "from speakerswitch.v1 import speakerswitch_pb2"
_RELATIVE_IMPORT = "from . import speakerswitch_pb2"


def generate() -> dict[str, bytes]:
    """Run protoc on the .proto and return {file name: content} of the fixed-up modules."""
    from grpc_tools import protoc  # imported here: only generation needs grpcio-tools

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + PROTO_FILE)
        out = {}
        for name in GENERATED:
            text = (pathlib.Path(tmp) / "speakerswitch" / "v1" / name).read_text()
            out[name] = text.replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT).encode()
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the committed modules are out of date")
    a = ap.parse_args(argv)
    fresh = generate()
    stale = [d / n for d in (OUT_DIR, CLIENT_OUT_DIR) for n, b in fresh.items()
             if not (d / n).exists() or (d / n).read_bytes() != b]
    if a.check:
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fresh[path.name])
    # touch even when unchanged, so make sees the outputs as newer than the .proto
    for d in (OUT_DIR, CLIENT_OUT_DIR):
        for n in GENERATED:
            (d / n).touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
