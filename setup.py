"""The C extensions (everything else is in pyproject.toml): dsp._kernel, the engine's
level path, and service.runtime._wire, which reads a request's steady ticks from its bytes.
Optional: without a C compiler the install still succeeds, dsp/engine.py runs its numpy
path and service/runtime/rooms/registry.py reads every tick through protobuf. The kernel is
built without fast-math and FMA contraction, so that its results are byte-identical to
numpy's (tests/test_engine_paths.py).

The wheel also carries the contract: proto/speakerswitch/v1/speakerswitch.proto is copied to
service/api/speakerswitch/v1/ (the path its own package name gives, so a client compiles it
with ``-I <site-packages>/service/api``). proto/ stays where `make proto` reads it; MANIFEST.in
puts it in the sdist, so a wheel built from the sdist has it too."""
import pathlib
import shutil

from setuptools import Extension, setup
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


setup(cmdclass={"build_py": BuildPyWithProto},
      ext_modules=[Extension("dsp._kernel", ["dsp/_kernel.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off",
                                                 "-fno-fast-math"]),
                   Extension("service.runtime._wire", ["service/runtime/_wire.c"], optional=True,
                             extra_compile_args=["-O2"])])
