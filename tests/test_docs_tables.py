"""The reference tables in docs/ against the code they describe: every configuration key
and every metric the server exports is documented, and the docs name none that is gone."""
from __future__ import annotations

import dataclasses
import pathlib
import re

from service.runtime.config import ServiceConfig
from service.runtime.metrics import Metrics

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
# configuration.md has the table; the security keys live in security.md (configuration.md
# sends the reader there for jwt_*, tls_* and the per-tenant limits)
CONFIG_PAGES = ("configuration.md", "security.md", "scaling-out.md")
INTERNAL_KEYS = {"gc_interval_s", "reuse_port"}
"""How often idle rooms are looked for (a test knob: tests set it to 0.05 s; operators tune
`idle_timeout_s`), and SO_REUSEPORT, which `workers` sets for each worker itself."""


def backticked(text: str) -> set[str]:
    """Names in backticks: `key`, or a flag `--key-name` as the key key_name."""
    keys = set(re.findall(r"`([a-z_][a-z0-9_]*)", text))
    return keys | {f.replace("-", "_") for f in re.findall(r"`--([a-z][a-z0-9-]*)", text)}


def test_every_configuration_key_is_documented():
    named = set().union(*(backticked((DOCS / p).read_text()) for p in CONFIG_PAGES))
    keys = {f.name for f in dataclasses.fields(ServiceConfig)} - INTERNAL_KEYS
    assert sorted(keys - named) == []


def test_the_configuration_table_names_only_real_keys():
    keys = {f.name for f in dataclasses.fields(ServiceConfig)}
    table = [line for line in (DOCS / "configuration.md").read_text().splitlines()
             if line.startswith("| `")]
    assert table, "the key table of docs/configuration.md was not found"
    named = set().union(*(backticked(line.split("|")[1]) for line in table))
    assert sorted(named - keys) == []


def exported_metrics() -> set[str]:
    """The metric names a scrape shows (counters with _total), of the server's registry."""
    names = set()
    for family in Metrics().registry.collect():
        if family.name.startswith("speakerswitch_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_metric_is_in_the_operations_table_and_nothing_else():
    text = (DOCS / "operations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `speakerswitch_")]
    documented = set(re.findall(r"`(speakerswitch_[a-z_]+)", "\n".join(rows)))
    exported = exported_metrics()
    assert len(exported) >= 15  # found the registry
    assert sorted(exported - documented) == []
    assert sorted(documented - exported) == []
