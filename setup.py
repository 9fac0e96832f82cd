"""The C extensions (everything else is in pyproject.toml): dsp._kernel, the engine's
level path, and service._wire, which reads a request's steady ticks from its bytes.
Optional: without a C compiler the install still succeeds, dsp/engine.py runs its numpy
path and service/rooms.py reads every tick through protobuf. The kernel is built without
fast-math and FMA contraction, so that its results are byte-identical to numpy's
(tests/test_engine_paths.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("dsp._kernel", ["dsp/_kernel.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off",
                                                 "-fno-fast-math"]),
                   Extension("service._wire", ["service/_wire.c"], optional=True,
                             extra_compile_args=["-O2"])])
