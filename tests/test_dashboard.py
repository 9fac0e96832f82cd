"""The Grafana dashboard works for any Prometheus data source and any job name (issue 18
item 4): its data source is the variable ``datasource`` (no hard-coded uid), the variables
``job`` and ``instance`` come from speakerswitch_build_info, every series a panel queries is
filtered by both, and every query is valid PromQL (promtool, variables substituted)."""
import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "deploy/grafana/speakerswitch.json").read_text())
PROMTOOL = shutil.which("promtool")
SELECTOR = re.compile(r"\b((?:speakerswitch|process)_[a-z_]+)\b(\{[^}]*\})?")


def _walk(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
        yield path, node
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _exprs() -> list[tuple[str, str]]:
    return [(f"panel {p['id']} {t['refId']}", t["expr"])
            for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def test_variables_datasource_job_instance():
    v = {x["name"]: x for x in DASHBOARD["templating"]["list"]}
    assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert v[name]["type"] == "query" and v[name]["datasource"]["uid"] == "${datasource}"
        assert v[name]["multi"] and v[name]["includeAll"], name
        query = v[name]["query"]
        query = query["query"] if isinstance(query, dict) else query
        # from the metric only speakerswitch exports, so another job's targets are not offered
        assert query.startswith("label_values(speakerswitch_build_info") and \
            query.endswith(f", {name})"), query
    assert '{job=~"$job"}' in v["instance"]["query"]["query"]  # instances of the chosen jobs


def test_no_hard_coded_datasource_uid():
    sources = [(path, node) for path, node in _walk(DASHBOARD)
               if path.endswith(".datasource") and isinstance(node, dict)]
    assert len(sources) >= len(DASHBOARD["panels"])
    for path, ds in sources:
        assert ds.get("uid") == "${datasource}", (path, ds)


def test_every_queried_series_is_filtered_by_job_and_instance():
    checked = 0
    for where, expr in _exprs():
        for name, sel in SELECTOR.findall(expr):
            assert sel and 'job=~"$job"' in sel and 'instance=~"$instance"' in sel, (where, expr)
            checked += 1
    assert checked >= 15


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "'prometheus'; make test installs it when it can)")
def test_every_panel_query_is_valid_promql(tmp_path):
    rules = []
    for i, (where, expr) in enumerate(_exprs()):
        concrete = (expr.replace("$__rate_interval", "1m").replace("$job", ".+")
                    .replace("$instance", ".+"))
        assert "$" not in concrete, (where, concrete)  # a variable the test does not know
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
