"""Every `speakerswitch` subcommand against bad arguments and bad files (issue 17): exit code
2, one line on stderr naming the flag or file (argparse's own usage errors: its usage lines
and one error line), and never a traceback. The commands come from ``build_parser``, so a
new subcommand without cases here fails ``test_every_subcommand_has_bad_input_cases``.

Most cases run in-process through ``main(argv)`` (fast); the busy ports also as real
processes, ``--workers`` included. tests/test_cli.py has the working paths and a few
errors (bad CSV rows, no .wav files, port 70000, an absent replay server), not repeated
here."""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import socket
import struct
import subprocess
import sys
import wave

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import service.cli as cli
from service.cli import TUNING_FLAGS, build_parser, main
from service.runtime.rooms import OVERRIDE_RANGES

HEADER = b"t_ms,participant,level,voice\n"
FIXTURE = [HealthCheck.function_scoped_fixture]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def busy():
    """A port that is taken: a plain socket listening on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _wav(path, rate=16000, channels=1, seconds=0.1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(rate * seconds) * channels)


def _keys(d) -> dict[str, str]:
    """Private keys (EC P-256, EC P-384, RSA), a public key, and a certificate whose key is
    the P-256 one, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    pem = dict(encoding=serialization.Encoding.PEM, format=serialization.PrivateFormat.PKCS8,
               encryption_algorithm=serialization.NoEncryption())
    ec256 = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ec256.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(ec256, hashes.SHA256()))
    files = {
        "ec": ec256.private_bytes(**pem),
        "ec384": ec.generate_private_key(ec.SECP384R1()).private_bytes(**pem),
        "rsa": rsa.generate_private_key(65537, 2048).private_bytes(**pem),
        "ec_pub": ec256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "cert": cert.public_bytes(serialization.Encoding.PEM),
    }
    out = {}
    for k, data in files.items():
        (d / f"{k}.pem").write_bytes(data)
        out[k] = str(d / f"{k}.pem")
    return out


@pytest.fixture(scope="module")
def f(tmp_path_factory, busy) -> dict[str, str]:
    """Bad (and a few good) input files by name, for the {placeholders} of CASES."""
    d = tmp_path_factory.mktemp("bad")
    rng = random.Random(17)
    files: dict[str, str] = {}

    def put(name: str, data: bytes | str, filename: str | None = None) -> None:
        p = d / (filename or name)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        files[name] = str(p)

    def folder(name: str) -> str:
        p = d / name
        p.mkdir()
        files[name] = str(p)
        return str(p)

    put("empty", b"")
    put("binary", bytes(rng.randrange(256) for _ in range(3000)))
    put("text", "hello\nworld\n")
    put("levels", HEADER + b"".join(b"%d,p%d,%d,%d\n" % (t, p, 30 if p == 1 else 90, p == 1)
                                    for t in range(0, 1000, 20) for p in (1, 2)),
        "levels.csv")
    put("decisions", '{"t_ms": 100, "speaker": "p1"}\n', "d.jsonl")
    put("decisions_nan", '{"t_ms": 0, "speaker": "p1"}\n{"t_ms": NaN, "speaker": "p2"}\n')
    put("truth", json.dumps({"duration_ms": 1000, "participants": ["p1", "p2"],
                             "floor": [[0, 1000, "p1"]], "changes": []}), "truth.json")
    put("truth_list", "[1, 2, 3]")
    put("truth_shape", json.dumps({"duration_ms": 1000, "floor": [[0]], "changes": []}))
    put("events_bad_t", '{"t_ms": 1e30, "participant": "p1", "video": false}\n')
    put("toml_bad", "port = [\n")
    put("toml_unknown", "portt = 1\n")
    put("toml_type", 'port = "x"\n')
    put("toml_server", "server = 5\n")
    put("secret", "s" * 40)
    put("blank", " \n\t\n")
    put("junk_pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    files.update(_keys(d))
    files["missing"] = str(d / "missing.csv")
    files["missing_dir"] = str(d / "no-such-dir")
    files["under_a_file"] = files["levels"] + "/sub/out"     # unwritable, even as root
    files["png_under_a_file"] = files["levels"] + "/t.png"
    files["bad_ext"] = str(d / "t.xyz")
    files["png"] = str(d / "t.png")
    files["out"] = str(d / "o.jsonl")
    pathlib.Path(folder("junk_wav"), "a.wav").write_bytes(b"RIFX" + bytes(200))
    pathlib.Path(folder("empty_wav"), "a.wav").write_bytes(b"")
    _wav(pathlib.Path(folder("rate_wav"), "a.wav"), rate=44100)
    _wav(pathlib.Path(folder("stereo_wav"), "a.wav"), channels=2)
    folder("empty_dir")
    scenario = pathlib.Path(folder("truth_dir"), "turns_00")
    scenario.mkdir()
    (scenario / "truth.json").write_text(open(files["truth"]).read())
    files["busy"], files["closed"], files["free"] = str(busy), str(free_port()), str(free_port())
    return files


@pytest.fixture(autouse=True)
def never_serve(monkeypatch):
    """In-process, serve and demo must fail before they start anything: starting is a bug
    here (and would block the test)."""
    def started(*_a, **_k):
        raise AssertionError("the server would have started")

    import service.demo.live
    import service.runtime.server

    monkeypatch.setattr(service.runtime.server, "serve", started)
    monkeypatch.setattr(service.demo.live, "run", started)
    monkeypatch.setattr(cli, "_serve_workers", started)


NOAUTH = ["--insecure-no-auth", "--metrics-port", "-1"]
OUT = ["--out", "{out}"]
LEVELS = ["--levels", "{levels}"]
TOKEN = ["token", "create", "--tenant", "acme", "--grant", "watch"]
PLOT = ["plot", "{decisions}", "--levels", "{levels}"]
USAGE = None  # an argparse error: its usage lines, then "speakerswitch X: error: ..."

# (argv with {placeholders} from the `f` fixture, exit code, what stderr must say)
CASES = [
    # serve: ports (each listener, each worker's), hosts, config and key files
    (["serve", *NOAUTH, "--port", "{busy}"], 2,
     "--port: cannot listen on 127.0.0.1:{busy} (address already in use); is another server "
     "running? use --port 0 for any free port"),
    (["serve", "--insecure-no-auth", "--port", "0", "--metrics-port", "{busy}"], 2,
     "--metrics-port: cannot listen on 127.0.0.1:{busy} (address already in use)"),
    (["serve", *NOAUTH, "--port", "0", "--http-port", "{busy}"], 2,
     "--http-port: cannot listen on 127.0.0.1:{busy} (address already in use)"),
    (["serve", "--insecure-no-auth", "--port", "{free}", "--workers", "2",
      "--metrics-port", "{busy}"], 2, "--metrics-port: worker 0 cannot listen on"),
    (["serve", *NOAUTH, "--port", "{busy}", "--workers", "2"], 2,
     "the workers share it: choose another --port"),
    (["serve", *NOAUTH, "--host", "192.0.2.1"], 2,
     "--port: cannot listen on 192.0.2.1:50051 (cannot assign requested address); --host "
     "must be an address of this machine"),
    (["serve", "--insecure-no-auth", "--port", "0", "--metrics-host", "192.0.2.1"], 2,
     "--metrics-host must be an address of this machine"),
    (["serve", *NOAUTH, "--port", "0", "--http-port", "0", "--http-host", "192.0.2.1"], 2,
     "--http-host must be an address of this machine"),
    (["serve", "--config", "{missing}"], 2, "--config: {missing}: No such file"),
    (["serve", "--config", "{toml_bad}"], 2, "{toml_bad}: not valid TOML"),
    (["serve", "--config", "{binary}"], 2, "{binary}: not valid TOML"),
    (["serve", "--config", "{toml_unknown}"], 2, "{toml_unknown}: unknown setting 'portt'"),
    (["serve", "--config", "{toml_type}"], 2, "{toml_type}: port: expected int"),
    (["serve", "--config", "{toml_server}"], 2, "{toml_server}: [server] must be a table"),
    (["serve", "--port", "0", "--jwt-secret-file", "{empty}"], 2,
     "--jwt-secret-file: {empty} is empty"),
    (["serve", "--port", "0", "--jwt-secret-file", "{blank}"], 2, "is empty"),
    (["serve", "--port", "0", "--jwt-secret-file", "{missing}"], 2,
     "--jwt-secret-file: {missing}: No such file"),
    (["serve", "--port", "0", "--jwt-public-key-file", "{secret}"], 2,
     "--jwt-public-key-file: {secret} is not an RSA or EC public key"),
    (["serve", *NOAUTH, "--port", "0", "--tls-cert-file", "{junk_pem}", "--tls-key-file",
      "{ec}"], 2, "--tls-cert-file: {junk_pem} is not a PEM certificate"),
    (["serve", *NOAUTH, "--port", "0", "--tls-cert-file", "{cert}", "--tls-key-file",
      "{binary}"], 2, "--tls-key-file: {binary} is not a PEM private key"),
    (["serve", *NOAUTH, "--port", "0", "--tls-cert-file", "{cert}", "--tls-key-file",
      "{rsa}"], 2, "--tls-key-file: {rsa} is not the key of the certificate"),
    (["serve", "--idle-timeout-s", "nan"], USAGE, "argument --idle-timeout-s: nan is not > 0"),
    (["serve", "--port", "x"], USAGE, "argument --port"),
    # replay: every input, the output, the tuning flags, the connection flags
    (["replay", "--levels", "{missing}", *OUT], 2, "{missing}: No such file"),
    (["replay", "--levels", "{empty}", *OUT], 2, "{empty}: header must be"),
    (["replay", "--levels", "{binary}", *OUT], 2, "{binary}: not UTF-8 text"),
    (["replay", "--levels", "{text}", *OUT], 2, "{text}: header must be"),
    (["replay", "--levels", "{empty_dir}", *OUT], 2, "{empty_dir}: Is a directory"),
    (["replay", "--wav-dir", "{missing_dir}", *OUT], 2, "{missing_dir}: no such directory"),
    (["replay", "--wav-dir", "{levels}", *OUT], 2, "{levels}: not a directory"),
    (["replay", "--wav-dir", "{junk_wav}", *OUT], 2, "a.wav: not a WAV file"),
    (["replay", "--wav-dir", "{empty_wav}", *OUT], 2, "a.wav: not a WAV file"),
    (["replay", "--wav-dir", "{rate_wav}", *OUT], 2, "a.wav: 44100 Hz is not one of"),
    (["replay", "--wav-dir", "{stereo_wav}", *OUT], 2, "a.wav: must be mono 16-bit PCM"),
    (["replay", *LEVELS, "--out", "{under_a_file}"], 2, "--out: {under_a_file}: Not a dir"),
    (["replay", *LEVELS, *OUT, "--events", "{missing}"], 2, "{missing}: No such file"),
    (["replay", *LEVELS, *OUT, "--events", "{binary}"], 2, "{binary}: not UTF-8 text"),
    (["replay", *LEVELS, *OUT, "--events", "{levels}"], 2, "{levels}:1: not JSON"),
    (["replay", *LEVELS, *OUT, "--events", "{events_bad_t}"], 2,
     "{events_bad_t}:1: t_ms must be 0.."),
    (["replay", *LEVELS, *OUT, "--hold-ms", "-5"], USAGE,
     "argument --hold-ms: -5 is outside 0..60000"),
    (["replay", *LEVELS, *OUT, "--hold-ms", "99999999999"], USAGE, "outside 0..60000"),
    (["replay", *LEVELS, *OUT, "--hold-ms", "1.5"], USAGE, "not an integer: '1.5'"),
    (["replay", *LEVELS, *OUT, "--switch-margin-db", "nan"], USAGE, "outside 0..60"),
    (["replay", *LEVELS, *OUT, "--batch-ticks", "0"], USAGE, "argument --batch-ticks"),
    (["replay", *LEVELS, *OUT, "--server", "nowhere"], USAGE, "is not HOST:PORT"),
    (["replay", *LEVELS, *OUT, "--server", "127.0.0.1:{closed}", "--connect-timeout-s",
      "-1"], USAGE, "argument --connect-timeout-s: -1 is not > 0"),
    (["replay", *LEVELS, *OUT, "--server", "127.0.0.1:{closed}", "--tls-ca-file",
      "{missing}"], 2, "--tls-ca-file: {missing}: No such file"),
    (["replay", *LEVELS, *OUT, "--plot", "{png}", "--truth", "{binary}"], 2,
     "{binary}: not UTF-8 text"),
    (["replay", *LEVELS, *OUT, "--plot", "{png}", "--truth", "{levels}"], 2,
     "{levels}: not JSON"),
    (["replay", *LEVELS, *OUT, "--plot", "{png_under_a_file}"], 2,
     "{png_under_a_file}: Not a directory"),
    (["replay", *LEVELS, *OUT, "--plot", "{bad_ext}"], 2, "Format 'xyz' is not supported"),
    # sample
    (["sample", "--out", "{levels}"], 2, "--out: {levels} is a file, not a directory"),
    (["sample", "--out", "{under_a_file}"], 2, "--out: {under_a_file}: Not a directory"),
    (["sample", "--out", "{out}", "--seed", "-1"], USAGE, "argument --seed: -1 is not >= 0"),
    (["sample", "--out", "{out}", "--rate", "44100"], USAGE, "argument --rate"),
    # evaluate
    (["evaluate", "--truth", "{levels}", "--decisions", "{decisions}"], 2,
     "{levels}: not JSON"),
    (["evaluate", "--truth", "{binary}", "--decisions", "{decisions}"], 2,
     "{binary}: not UTF-8 text"),
    (["evaluate", "--truth", "{missing}", "--decisions", "{decisions}"], 2,
     "{missing}: No such file"),
    (["evaluate", "--truth", "{truth_list}", "--decisions", "{decisions}"], 2,
     "{truth_list}: not a truth.json"),
    (["evaluate", "--truth", "{truth_shape}", "--decisions", "{decisions}"], 2,
     "{truth_shape}: malformed truth"),
    (["evaluate", "--truth", "{truth}", "--decisions", "{binary}"], 2,
     "{binary}: not UTF-8 text"),
    (["evaluate", "--truth", "{truth}", "--decisions", "{levels}"], 2, "{levels}:1: not JSON"),
    (["evaluate", "--truth", "{truth}", "--decisions", "{decisions_nan}"], 2,
     "{decisions_nan}:2: not a decision line (t_ms nan is not a finite number)"),
    (["evaluate", "--truth", "{truth}", "--decisions", "{missing}"], 2,
     "{missing}: No such file"),
    (["evaluate", "--truth", "{truth_dir}", "--decisions", "{decisions}"], 2,
     "--decisions: {decisions} is not a directory"),
    (["evaluate", "--truth", "{empty_dir}", "--decisions", "{empty_dir}"], 2,
     "{empty_dir}: no */truth.json"),
    # scenarios
    (["scenarios", "--out", "{out}", "--seconds", "-5"], USAGE,
     "argument --seconds: -5 is outside 5..600"),
    (["scenarios", "--out", "{out}", "--seconds", "nan"], USAGE, "outside 5..600"),
    (["scenarios", "--out", "{out}", "--variants", "0"], USAGE,
     "argument --variants: 0 is not >= 1"),
    (["scenarios", "--out", "{out}", "--types", "turns,nope"], 2, "--types: unknown ['nope']"),
    (["scenarios", "--out", "{out}", "--types", ","], 2, "--types: none given"),
    (["scenarios", "--out", "{levels}", "--types", "turns"], 2,
     "--out: {levels} is a file, not a directory"),
    (["scenarios", "--out", "{under_a_file}", "--types", "turns"], 2,
     "--out: {under_a_file}: Not a directory"),
    # token create: the key decides the algorithm; a mismatch, or a key that cannot sign
    ([*TOKEN, "--key", "{missing}"], 2, "--key: {missing}: No such file"),
    ([*TOKEN, "--key", "{empty}"], 2, "--key: {empty} is empty"),
    ([*TOKEN, "--key", "{ec}", "--algorithm", "HS256"], 2,
     "--algorithm HS256: --key {ec} is an EC P-256 private key, which signs ES256"),
    ([*TOKEN, "--key", "{rsa}", "--algorithm", "ES256"], 2, "which signs RS256"),
    ([*TOKEN, "--key", "{secret}", "--algorithm", "RS256"], 2, "which signs HS256"),
    ([*TOKEN, "--key", "{ec_pub}"], 2, "--key: {ec_pub} is a public key or certificate"),
    ([*TOKEN, "--key", "{ec384}"], 2, "ES256 needs P-256"),
    ([*TOKEN, "--key", "{secret}", "--ttl", "soon"], 2, "--ttl: not a duration: 'soon'"),
    ([*TOKEN, "--key", "{secret}", "--ttl=-5m"], 2, "--ttl: '-5m' is not between"),
    (["token", "create", "--tenant", "acme", "--grant", "admin", "--key", "{secret}"], 2,
     "--grant: grants must be among"),
    (["token", "create", "--tenant", "", "--grant", "watch", "--key", "{secret}"], 2,
     "--tenant: must be 1..128 bytes"),
    (["token", "create", "--grant", "watch", "--key", "{secret}"], USAGE, "--tenant"),
    (["token"], USAGE, "required"),
    # health (an unreachable server is exit 1, as documented; still one line)
    (["health", "--server", ""], USAGE, "argument --server: '' is not HOST:PORT"),
    (["health", "--server", "localhost"], USAGE, "is not HOST:PORT"),
    (["health", "--server", "127.0.0.1:99999"], USAGE, "is not HOST:PORT"),
    (["health", "--timeout-s", "0"], USAGE, "argument --timeout-s: 0 is not > 0"),
    (["health", "--tls-ca-file", "{missing}"], 2, "--tls-ca-file: {missing}: No such file"),
    (["health", "--tls-cert-file", "{cert}"], 2, "--tls-cert-file and --tls-key-file go"),
    (["health", "--server", "127.0.0.1:{closed}", "--timeout-s", "2"], 1,
     "127.0.0.1:{closed}: UNAVAILABLE"),
    # plot
    ([*PLOT[:2], "--levels", "{binary}", "--out", "{png}"], 2, "{binary}: not UTF-8 text"),
    (["plot", "{missing}", "--levels", "{levels}", "--out", "{png}"], 2,
     "{missing}: No such file"),
    (["plot", "{binary}", "--levels", "{levels}", "--out", "{png}"], 2,
     "{binary}: not UTF-8 text"),
    ([*PLOT, "--out", "{png}", "--truth", "{text}"], 2, "{text}: not JSON"),
    ([*PLOT, "--out", "{png_under_a_file}"], 2, "{png_under_a_file}: Not a directory"),
    ([*PLOT, "--out", "{bad_ext}"], 2, "Format 'xyz' is not supported"),
    # watch (an unreachable server is exit 1; still one line)
    (["watch", "r1", "--server", ""], USAGE, "is not HOST:PORT"),
    (["watch", "r1", "--max-events", "-1"], USAGE, "argument --max-events: -1 is not >= 0"),
    (["watch", "r1", "--tls-ca-file", "{missing}"], 2, "--tls-ca-file: {missing}: No such"),
    (["watch", "r1", "--tls-ca-file", "{binary}"], 2, "--tls-ca-file: {binary} is not PEM"),
    (["watch", "r1", "--token", "a b\n"], 2, "--token: not a bearer token"),
    (["watch", "r1", "--server", "127.0.0.1:{closed}"], 1,
     "server 127.0.0.1:{closed}: UNAVAILABLE"),
    # demo
    (["demo", "--port", "{busy}", "--no-browser"], 2,
     "--port: cannot listen on 127.0.0.1:{busy} (address already in use)"),
    (["demo", "--port", "0", "--http-port", "{busy}", "--no-browser"], 2,
     "--http-port: cannot listen on 127.0.0.1:{busy}"),
    (["demo", "--port", "0", "--http-port", "0", "--metrics-port", "{busy}"], 2,
     "--metrics-port: cannot listen on 127.0.0.1:{busy}"),
    (["demo", "--host", "192.0.2.1", "--port", "0", "--http-port", "0"], 2,
     "--host must be an address of this machine"),
    (["demo", "--speed", "nan"], 2, "--speed must be > 0"),
    (["demo", "--port", "x"], USAGE, "argument --port"),
    ([], USAGE, "required: command"),
]


def _id(case) -> str:
    return " ".join(case[0])[:70] or "(no command)"


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in-process -> (exit code, stdout, stderr); argparse exits too. An exception
    escaping main is what a user would see as a traceback: it fails the test."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, expect_code, expect: str) -> None:
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    if expect_code is USAGE:  # argparse: usage (wrapped over lines), then one error line
        assert code == 2, err
        assert lines[0].startswith("usage: speakerswitch"), err
        assert lines[-1].startswith("speakerswitch") and ": error: " in lines[-1], err
    else:
        assert code == expect_code, err
        assert len(lines) == 1, err
        assert lines[0].startswith(("speakerswitch ", "127.0.0.1:")), err
    assert expect in lines[-1], err


@pytest.mark.parametrize("argv, code, expect", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(f, capsys, argv, code, expect):
    argv = [a.format(**f) for a in argv]
    assert_one_line_error(*run(capsys, argv), code, expect.format(**f))


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple = ()) -> set[tuple]:
    """Every (sub)command path: ("serve",), ("token", "create"), ..."""
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, prefix + (name,))
                out |= nested or {prefix + (name,)}
    return out


def test_every_subcommand_has_bad_input_cases():
    commands = _subcommands(build_parser())
    assert ("serve",) in commands and ("token", "create") in commands
    for path in commands:
        cases = [c for c in CASES if tuple(c[0][:len(path)]) == path]
        ours = [c for c in cases if c[1] is not USAGE]
        assert len(ours) >= 1, f"speakerswitch {' '.join(path)}: no bad-input cases here"


def test_tuning_flags_show_their_range_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in TUNING_FLAGS:
        lo, hi = OVERRIDE_RANGES[name]
        assert f"override the profile's {name} ({lo:g}..{hi:g})" in text


@st.composite
def tuning_value(draw):
    """A tuning flag and a value the server would refuse (outside its range, or NaN/inf),
    or one it accepts (True)."""
    name = draw(st.sampled_from(sorted(TUNING_FLAGS)))
    lo, hi = OVERRIDE_RANGES[name]
    kind = TUNING_FLAGS[name]
    num = st.integers if kind is int else (lambda **k: st.floats(allow_nan=False, **k))
    bad = st.one_of(num(max_value=lo - 1), num(min_value=hi + 1),
                    st.sampled_from(["nan", "inf", "-inf", ""] if kind is float
                                    else ["1.5", "1e3", ""]))
    ok = draw(st.booleans())
    value = draw(num(min_value=lo, max_value=hi) if ok else bad)
    return name, str(value), ok


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(tuning_value())
def test_tuning_flags_refuse_what_the_server_would(capsys, case):
    name, value, ok = case
    flag = "--" + name.replace("_", "-")
    argv = ["replay", "--levels", "x.csv", "--out", "-", flag + "=" + value]
    if ok:
        assert getattr(build_parser().parse_args(argv), name) == TUNING_FLAGS[name](value)
        return
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: " in err and "Traceback" not in err


def _wav_header(n_bytes: int, rate: int = 16000) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", n_bytes))


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(kind=st.sampled_from(["levels", "wav", "events", "decisions", "truth", "config", "key"]),
       prefix=st.sampled_from([b"", HEADER, b"\xef\xbb\xbf" + HEADER, b"RIFF", b"-----BEGIN",
                               b'{"t_ms": 0, "participant": "p1", "video": false}\n', None]),
       body=st.one_of(st.binary(max_size=400),
                      st.text(max_size=200).map(lambda s: s.encode("utf-8", "replace"))))
def test_random_bytes_as_any_input_file(f, tmp_path, capsys, kind, prefix, body):
    """Random bytes (after a plausible start) in every kind of input file: the command
    either works (exit 0) or says in one line what is wrong (exit 2), never a traceback."""
    data = (_wav_header(len(body)) if prefix is None else prefix) + body
    path = tmp_path / "input"
    path.write_bytes(data)
    if kind == "wav":
        path = tmp_path / "wavs"
        path.mkdir(exist_ok=True)
        (path / "p1.wav").write_bytes(data)
    out = str(tmp_path / "o.jsonl")
    argv = {"levels": ["replay", "--levels", path, "--out", out],
            "wav": ["replay", "--wav-dir", path, "--out", out],
            "events": ["replay", "--levels", f["levels"], "--events", path, "--out", out],
            "decisions": ["evaluate", "--truth", f["truth"], "--decisions", path],
            "truth": ["evaluate", "--truth", path, "--decisions", f["decisions"]],
            "config": ["serve", "--config", path, "--port", f["busy"]],
            "key": [*TOKEN, "--key", path]}[kind]
    code, out_text, err = run(capsys, [str(a) for a in argv])
    assert "Traceback" not in out_text + err
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    else:  # what worked says so, and warnings are one line each
        assert all(line.startswith("speakerswitch ") and ": warning: " in line
                   or " switches in " in line for line in err.strip().splitlines()), err


def test_unknown_host_names_the_host_flag(capsys, monkeypatch):
    def unknown(*_a, **_k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    code, out, err = run(capsys, ["serve", "--insecure-no-auth", "--host", "nohost.example"])
    assert_one_line_error(code, out, err, 2, "--port: cannot listen on nohost.example:50051 "
                          "(unknown host: name or service not known); --host must be")


def test_levels_csv_with_a_byte_order_mark_is_accepted(f, tmp_path, capsys):
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + open(f["levels"], "rb").read())
    plain, marked = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["replay", "--levels", f["levels"], "--out", str(plain)]) == 0
    assert main(["replay", "--levels", str(bom), "--out", str(marked)]) == 0
    assert plain.read_text() and plain.read_text() == marked.read_text()


def test_events_for_an_unknown_participant_are_warned_with_the_line(f, tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    events.write_text('{"t_ms": 0, "participant": "p1", "video": true}\n'
                      '{"t_ms": 100, "participant": "p9", "video": false}\n'
                      '{"t_ms": 200, "participant": "p9", "video": true}\n')
    code, _, err = run(capsys, ["replay", "--levels", f["levels"], "--events", str(events),
                                "--out", str(tmp_path / "o.jsonl")])
    assert code == 0
    warnings = [x for x in err.splitlines() if "warning" in x]
    assert warnings == [f"speakerswitch replay: warning: {events}:2: participant 'p9' is in "
                        "none of the conversation's tracks (p1, p2); a typo?"]


@pytest.mark.parametrize("key, alg", [("ec", "ES256"), ("rsa", "RS256"), ("secret", "HS256")])
def test_token_create_takes_the_algorithm_from_the_key(f, capsys, key, alg):
    code, out, err = run(capsys, [*TOKEN, "--key", f[key]])
    assert code == 0 and not err
    assert jwt.get_unverified_header(out.strip())["alg"] == alg
    code, out, _ = run(capsys, [*TOKEN, "--key", f[key], "--algorithm", alg])
    assert code == 0 and jwt.get_unverified_header(out.strip())["alg"] == alg


def test_a_short_hs256_secret_is_a_one_line_warning(f, tmp_path, capsys):
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    code, out, err = run(capsys, [*TOKEN, "--key", str(short)])
    assert code == 0 and out.strip()
    assert err.startswith(f"speakerswitch token: warning: --key {short}: The HMAC key is 3 "
                          "bytes long") and len(err.strip().splitlines()) == 1


def test_plot_without_matplotlib_names_the_extra(f, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if not installed
    for argv in ([*PLOT, "--out", f["png"]], ["replay", *LEVELS, "--out", f["out"], "--plot",
                                                f["png"]]):
        code, out, err = run(capsys, argv)
        assert_one_line_error(code, out, err, 2, "pip install 'speakerswitch[plot]'")


# --- as real processes: the busy ports (and --workers) -------------------------------------

def speakerswitch(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "service.cli", *args] if code is None else \
        [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, expect", [
    (["serve", "--insecure-no-auth", "--port", "{busy}"],
     "speakerswitch serve: --port: cannot listen on 127.0.0.1:{busy} (address already in "
     "use); is another server running? use --port 0 for any free port"),
    (["serve", "--insecure-no-auth", "--port", "{free}", "--workers", "2", "--metrics-port",
      "{busy}"], "speakerswitch serve: --metrics-port: worker 0 cannot listen on 127.0.0.1:"
     "{busy} (address already in use)"),
    (["demo", "--no-browser", "--port", "0", "--http-port", "{busy}"],
     "speakerswitch demo: --http-port: cannot listen on 127.0.0.1:{busy}"),
], ids=["serve", "serve-workers", "demo"])
def test_busy_ports_as_processes(f, args, expect):
    p = speakerswitch(*[a.format(**f) for a in args])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expect.format(**f)), p.stderr
    assert "Traceback" not in p.stdout + p.stderr


def test_a_worker_that_fails_to_bind_stops_the_others(f):
    """The port check bypassed (as if the port was taken after it): worker 0 cannot bind its
    metrics port, worker 1 starts; the parent stops it and exits 2 with the worker's line."""
    code = ("import sys, service.cli as c; c._listen_problem = lambda *a: None; "
            "sys.exit(c.main(sys.argv[1:]))")
    p = speakerswitch("serve", "--insecure-no-auth", "--log-level", "ERROR", "--port", f["free"],
                      "--workers", "2", "--metrics-port", f["busy"], code=code)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert p.stderr.splitlines() == [
        f"speakerswitch serve: --metrics-port: cannot listen on 127.0.0.1:{f['busy']} "
        "(address already in use); is another server running? use --metrics-port 0 for any "
        "free port"], p.stderr
