"""Configuration precedence: defaults < TOML file < SPEAKERSWITCH_* env < flags."""
import pytest

from service.runtime import config


def test_embedded_defaults():
    c = config.load({"insecure_no_auth": True}, env={})
    assert (c.host, c.port, c.metrics_port, c.profile) == ("127.0.0.1", 50051, 9100, "meeting")


def test_authentication_is_required_unless_explicitly_off():
    with pytest.raises(ValueError, match="authentication needs jwt_secret_file"):
        config.load(env={})
    assert config.load(env={"SPEAKERSWITCH_JWT_SECRET_FILE": "/k"}).jwt_secret_file == "/k"
    assert config.load(env={"SPEAKERSWITCH_INSECURE_NO_AUTH": "true"}).insecure_no_auth


def test_precedence(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[server]\nport = 6000\nmetrics_port = 9200\nprofile = "podcast"\n')
    c = config.load({"port": 7000, "insecure_no_auth": True}, str(f),
                    env={"SPEAKERSWITCH_PORT": "6500", "SPEAKERSWITCH_METRICS_PORT": "9300"})
    assert (c.port, c.metrics_port, c.profile) == (7000, 9300, "podcast")


@pytest.mark.parametrize("kwargs,match", [
    (dict(env={"SPEAKERSWITCH_PROT": "1"}), "unknown setting SPEAKERSWITCH_PROT"),
    (dict(env={"SPEAKERSWITCH_PORT": "http"}), "port: expected int"),
    (dict(overrides={"port": 70000}, env={}), "port: 70000 is not a TCP port"),
    (dict(overrides={"tls_cert_file": "/c"}, env={}), "tls_cert_file and tls_key_file go together"),
    (dict(env={"SPEAKERSWITCH_INSECURE_NO_AUTH": "maybe"}), "insecure_no_auth: expected true/false"),
    (dict(overrides={"profile": "karaoke"}, env={}), "profile: unknown 'karaoke'"),
    (dict(overrides={"idle_timeout_s": 0}, env={}), "idle_timeout_s: must be > 0"),
    (dict(env={"SPEAKERSWITCH_RTP_JITTER_MS": "0"}), r"rtp_jitter_ms: 0.0 is outside \(0, 1000\] ms"),
    (dict(overrides={"rtp_jitter_ms": 5000.0}, env={}), "rtp_jitter_ms: 5000.0 is outside"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config.load(**kwargs)


def test_unknown_key_in_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="unknown setting 'prot'"):
        config.load(config_file=str(f), env={})


def test_the_shipped_example_file_matches_the_embedded_defaults():
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "speakerswitch.toml"
    insecure = {"insecure_no_auth": True}
    assert config.load(insecure, config_file=str(path), env={}) == config.load(insecure, env={})


def test_nan_is_not_a_positive_number():
    import pytest

    for key in ("SPEAKERSWITCH_IDLE_TIMEOUT_S", "SPEAKERSWITCH_MAX_BATCHES_PER_S"):
        with pytest.raises(ValueError, match="must be > 0, got nan"):
            config.load({"insecure_no_auth": True}, env={key: "nan"})
    with pytest.raises(ValueError, match="max_participants: must be >= 0"):
        config.load({"insecure_no_auth": True, "max_participants": -1}, env={})


def test_the_rtp_jitter_wait_comes_from_the_environment():
    c = config.load({"insecure_no_auth": True}, env={"SPEAKERSWITCH_RTP_JITTER_MS": "250"})
    assert c.rtp_jitter_ms == 250.0
    assert config.load({"insecure_no_auth": True}, env={}).rtp_jitter_ms == 60.0
