"""The Helm chart reaches every `serve` option (issue 18 item 3).

No helm binary can be installed here, so the chart's one generic loop, values.settings ->
SPEAKERSWITCH_<NAME>, is rendered by the same rule in Python and fed to the real config loader;
every option `serve --help` offers must be a setting that loop can carry.
"""
import argparse
import pathlib
import re

import pytest
import yaml

from service import cli, config

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "speakerswitch"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEPLOYMENT = (CHART / "templates" / "deployment.yaml").read_text()
# what the chart sets itself, or what has no place in a pod
CHART_OWNS = {"port", "metrics_port", "grace_s", "jwt_secret_file", "config",
              "insecure_no_auth"}
LOOP = ("{{- range $name, $value := .Values.settings }}\n"
        "            - {name: SPEAKERSWITCH_{{ upper $name }}, "
        "value: {{ $value | toString | quote }}}\n"
        "            {{- end }}")


def serve_options() -> dict[str, str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {a.dest: a.option_strings[0] for a in serve._actions
            if a.option_strings and a.dest != "help"}


def render_settings(settings: dict) -> dict[str, str]:
    """The LOOP above, as Helm renders it: upper of the key; the value toString'd."""
    def to_string(v):
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    return {f"SPEAKERSWITCH_{k.upper()}": to_string(v) for k, v in sorted(settings.items())}


def test_the_deployment_carries_settings_by_that_loop():
    assert LOOP in DEPLOYMENT
    assert VALUES["settings"] == {}


def test_every_serve_option_is_a_setting_the_chart_can_carry():
    options = serve_options()
    assert len(options) > 15, options
    missing = {opt for dest, opt in options.items()
               if dest not in CHART_OWNS and dest not in config.FIELDS}
    assert not missing, f"serve options the chart's settings cannot reach: {sorted(missing)}"


def test_settings_rendered_reach_the_config_loader():
    settings = {"profile": "debate", "log_level": "DEBUG", "max_rooms": 500,
                "idle_timeout_s": 120, "workers": 2, "redis_url": "redis://redis:6379/0",
                "redis_prefix": "ss", "http_port": 8080, "insecure_http": True,
                "max_participants_per_room": 12}
    env = render_settings(settings)
    env["SPEAKERSWITCH_JWT_SECRET_FILE"] = "/etc/speakerswitch/jwt/secret"
    cfg = config.load({}, env=env)
    for name, value in settings.items():
        assert getattr(cfg, name) == value, (name, getattr(cfg, name), value)


def test_a_misspelt_setting_is_refused_not_ignored():
    with pytest.raises(ValueError, match="unknown setting"):
        config.load({"insecure_no_auth": True}, env=render_settings({"max_room": 5}))


def test_scheduling_and_extras_are_values():
    for key in ("nodeSelector", "affinity", "tolerations", "topologySpreadConstraints",
                "extraEnv", "extraVolumes", "extraVolumeMounts"):
        assert key in VALUES, key
        assert re.search(r"\{\{- with \.Values\.%s \}\}\n\s*(%s:\n\s*)?\{\{- toYaml \. \| nindent"
                         % (key, key), DEPLOYMENT), key


def test_service_monitor_is_off_unless_asked_and_notes_exist():
    assert VALUES["serviceMonitor"]["enabled"] is False
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "{{ .Release.Name }}" in notes and "settings." in notes
    for ref in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", notes):
        node = VALUES
        for part in ref.split("."):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]
