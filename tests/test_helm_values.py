"""The Helm chart reaches every `serve` option (issue 18 item 3).

No helm binary can be installed here, so the chart's one generic loop, values.settings ->
SPEAKERSWITCH_<NAME>, is rendered by the same rule in Python and fed to the real config loader;
every option `serve --help` offers must be a setting that loop can carry.
"""
import argparse
import json
import pathlib
import re

import jsonschema
import pytest
import yaml

from dsp.tuning import PROFILES
from service import cli
from service.runtime import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "speakerswitch"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEPLOYMENT = (CHART / "templates" / "deployment.yaml").read_text()
# what the chart sets itself, or what has no place in a pod
CHART_OWNS = {"port", "metrics_port", "grace_s", "jwt_secret_file", "config",
              "insecure_no_auth", "workers"}
LOOP = ("{{- range $name, $value := .Values.settings }}\n"
        "            - {name: SPEAKERSWITCH_{{ upper $name }}, "
        "value: {{ $value | toString | quote }}}\n"
        "            {{- end }}")


def serve_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def serve_options() -> dict[str, str]:
    serve = serve_parser()
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
                "idle_timeout_s": 120, "redis_url": "redis://redis:6379/0",
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


# --- values.schema.json: helm install/upgrade/lint refuse what the server would refuse later

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
SETTINGS_OWNED_BY_THE_CHART = {"port", "metrics_port", "grace_s", "jwt_secret_file", "workers",
                               "insecure_no_auth"}


def _schema_errors(values: dict) -> list[str]:
    v = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(values)]


def test_the_schema_is_draft7_and_accepts_the_chart_defaults():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert _schema_errors(VALUES) == []
    # every value of values.yaml is described; what the templates need is required
    assert set(VALUES) <= set(SCHEMA["properties"])
    assert set(SCHEMA["required"]) <= set(VALUES)
    assert SCHEMA["additionalProperties"] is False


def test_the_schema_settings_are_the_config_fields_with_their_types():
    import typing

    hints = typing.get_type_hints(config.ServiceConfig)
    props = SCHEMA["properties"]["settings"]["properties"]
    assert set(props) == set(config.FIELDS) - SETTINGS_OWNED_BY_THE_CHART
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    for name, prop in props.items():
        if "enum" in prop:
            continue
        assert prop["type"] == kinds[hints[name]], (name, prop, hints[name])
    assert props["profile"]["enum"] == sorted(PROFILES)
    assert set(props["log_level"]["enum"]) == set(
        next(a for a in serve_parser()._actions if a.dest == "log_level").choices)


@pytest.mark.parametrize("change,where", [
    ({"settings": {"max_room": 5}}, "settings"),               # a typo
    ({"settings": {"workers": 2}}, "settings"),                # the chart's own value
    ({"settings": {"port": 6000}}, "settings"),
    ({"settings": {"max_rooms": "many"}}, "settings/max_rooms"),
    ({"settings": {"profile": "lecture"}}, "settings/profile"),
    ({"setings": {}}, ""),                                      # a misspelt top-level value
    ({"workers": 0}, "workers"),
    ({"image": {"repository": "speakerswitch", "tag": "latest"}}, "image/tag"),
    ({"serviceMonitor": {"enabled": "yes"}}, "serviceMonitor/enabled"),
    ({"graceSeconds": -1}, "graceSeconds"),
])
def test_the_schema_refuses_what_the_server_would(change, where):
    values = {**VALUES, **change}
    errors = _schema_errors(values)
    assert errors and any(e.startswith(f"{where}:") for e in errors), errors


def test_settings_the_schema_accepts_load():
    settings = {"profile": "debate", "log_level": "DEBUG", "max_rooms": 500,
                "idle_timeout_s": 120.5, "redis_url": "redis://redis:6379/0",
                "insecure_http": True, "http_port": 8080}
    assert _schema_errors({**VALUES, "settings": settings}) == []
    cfg = config.load({}, env={**render_settings(settings),
                               "SPEAKERSWITCH_JWT_SECRET_FILE": "/etc/speakerswitch/jwt/secret"})
    assert cfg.max_rooms == 500 and cfg.profile == "debate"
