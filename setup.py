"""The C extensions (everything else is in pyproject.toml): dsp._kernel, the engine's
level path, and service.runtime._wire, which reads a request's steady ticks from its bytes.
Optional: without a C compiler the install still succeeds, dsp/engine.py runs its numpy
path and service/runtime/rooms/registry.py reads every tick through protobuf. The kernel is
built without fast-math and FMA contraction, so that its results are byte-identical to
numpy's (tests/test_engine_paths.py).

The wheel also carries the contract: proto/speakerswitch/v1/speakerswitch.proto is copied to
service/api/speakerswitch/v1/ (the path its own package name gives, so a client compiles it
with ``-I <site-packages>/service/api``). proto/ stays where `make proto` reads it; MANIFEST.in
puts it in the sdist, so a wheel built from the sdist has it too.

It carries the client too: service/client.py (the CLI's and the tests' blocking client) is
a layer on the client package, so clients/python/speakerswitch_client is mapped into this
wheel as ``service._client`` (its generated api/ modules and py.typed included; the sdist
takes it along). Under that name, not as a second top-level ``speakerswitch_client``: the
service wheel and the client's own wheel then share no file, so either installs, upgrades
or uninstalls without breaking the other, and the service always runs the client sources
it was built with. An editable install maps the same directory, so there is one copy of the
code."""
import pathlib
import shutil

from setuptools import Extension, find_namespace_packages, setup
from setuptools.command.build_py import build_py

PROTO = pathlib.Path("proto/speakerswitch/v1/speakerswitch.proto")


class BuildPyWithProto(build_py):
    def run(self) -> None:
        super().run()
        if not PROTO.is_file():  # a build that lost it must not ship a wheel without it
            raise FileNotFoundError(f"{PROTO} is missing: the wheel ships the contract")
        target = pathlib.Path(self.build_lib, "service", "api", *PROTO.parts[1:])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROTO, target)


CLIENT = "clients/python/speakerswitch_client"

setup(cmdclass={"build_py": BuildPyWithProto},
      # namespace packages too (what pyproject's packages.find did): the web viewer's
      # static/ and the demo's data/ directories go in as package data
      packages=[*find_namespace_packages(include=["service*", "dsp*"]),
                "service._client", "service._client.api"],
      package_dir={"service._client": CLIENT},
      ext_modules=[Extension("dsp._kernel", ["dsp/_kernel.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off",
                                                 "-fno-fast-math"]),
                   Extension("service.runtime._wire", ["service/runtime/_wire.c"], optional=True,
                             extra_compile_args=["-O2"])])
