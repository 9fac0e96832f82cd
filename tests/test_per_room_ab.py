"""benchmarks/per_room_ab.py's variants and benchmarks/echo_server.py's flags: a variant
that started another server than it names would compare the wrong things."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import echo_server  # noqa: E402
import per_room_ab  # noqa: E402

from service.runtime import group_commit


def test_echo_variant_keeps_flags_and_their_values_and_takes_upper_case_words_as_env():
    s = per_room_ab.server_for(
        "echo --option grpc.http2.bdp_probe=0 --loop uvloop GRPC_POLL_STRATEGY=poll")
    assert s.command[0].endswith("benchmarks/echo_server.py")
    assert list(s.command[1:]) == ["--option", "grpc.http2.bdp_probe=0", "--loop", "uvloop"]
    assert s.env["GRPC_POLL_STRATEGY"] == "poll"
    assert s.env["SPEAKERSWITCH_MAX_STREAMS_PER_TENANT"] == "1000"


def test_serve_variants_run_the_real_server_with_the_drain_interval_they_name():
    plain = per_room_ab.server_for("serve --log-level INFO")
    assert plain.command == ("-m", "service.cli", "serve")
    assert plain.extra_args == ("--log-level", "INFO")
    old = per_room_ab.server_for("serve drain_interval_s=0")
    code, interval, command = old.command[1:]
    assert (old.command[0], interval, command) == ("-c", "0", "serve")
    assert "group_commit.DRAIN_INTERVAL_S" in code and hasattr(group_commit,
                                                               "DRAIN_INTERVAL_S")


@pytest.mark.parametrize("bad", ["", "nginx", "echo drain_interval_s=0",
                                 "serve drain_interval_s=soon"])
def test_a_variant_that_names_no_server_is_refused(bad):
    with pytest.raises(ValueError):
        per_room_ab.server_for(bad)


def test_echo_server_options_are_channel_arguments():
    a = echo_server.parse_args(["--port", "1", "--metrics-port", "2", "--insecure-no-auth",
                                "--option", "grpc.http2.bdp_probe=0",
                                "--option", "grpc.optimization_target=throughput"])
    assert a.option == [("grpc.http2.bdp_probe", 0),
                        ("grpc.optimization_target", "throughput")]
    assert (a.loop, a.handler) == ("asyncio", "async-for")
    with pytest.raises(argparse.ArgumentTypeError):
        echo_server.channel_option("grpc.http2.bdp_probe")
