"""The one C extension: dsp._kernel, the engine's level path (everything else is in
pyproject.toml). Optional: without a C compiler the install still succeeds and
dsp/engine.py runs its numpy path. No fast-math and no FMA contraction, so that its
results are byte-identical to numpy's (tests/test_engine_paths.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("dsp._kernel", ["dsp/_kernel.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off",
                                                 "-fno-fast-math"])])
