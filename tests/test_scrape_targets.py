"""Every metrics port a deployment opens is declared and scraped (issue 18 item 4): with
``--workers N`` worker i serves its own metrics on 9100 + i, so the Helm chart declares and
scrapes one port per worker, and any manifest that sets SPEAKERSWITCH_WORKERS declares them
all; the static scrape config names the scale-out pods by their real DNS names.

No helm binary is available here: the chart's one loop over workers is rendered by Helm's
rule (``untilStep 1 N 1`` is 1..N-1; ``add``; ``$`` the root) in Python."""
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "speakerswitch"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
LOOP = re.compile(r"^[ \t]*\{\{- range \$i := untilStep 1 \(int \.Values\.workers\) 1 \}\}\n"
                  r"(.*?)^[ \t]*\{\{- end \}\}\n", re.M | re.S)


def render(template: str, workers: int) -> dict:
    """The template with the workers loop expanded and the values it uses substituted; lines
    with any other template action dropped (as the other chart tests read it)."""
    text = (CHART / "templates" / template).read_text()
    loops = LOOP.findall(text)
    assert loops, f"{template}: no loop over .Values.workers"

    def expand(m):
        out = []
        for i in range(1, workers):
            body = m.group(1)
            body = re.sub(r"\{\{ add 9100 \$i \}\}", str(9100 + i), body)
            body = body.replace("{{ $i }}", str(i))
            body = body.replace("{{ $.Values.serviceMonitor.interval }}",
                                str(VALUES["serviceMonitor"]["interval"]))
            out.append(body)
        return "".join(out)

    text = LOOP.sub(expand, text)
    text = text.replace("{{ .Values.serviceMonitor.interval }}",
                        str(VALUES["serviceMonitor"]["interval"]))
    text = text.replace('"{{ .Values.workers }}"', f'"{workers}"')
    text = re.sub(r"^.*\{\{.*$\n?", "", text, flags=re.M)
    return yaml.safe_load(text)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_chart_declares_and_scrapes_one_metrics_port_per_worker(workers):
    want = {9100 + i for i in range(workers)}
    dep = render("deployment.yaml", workers)
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"]
            if c["name"] == "speakerswitch"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SPEAKERSWITCH_WORKERS"] == str(workers)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    metrics = {n: p for n, p in ports.items() if n.startswith("metrics")}
    assert set(metrics.values()) == want, ports
    assert all(len(n) <= 15 for n in ports), "a port name is at most 15 characters"
    svc = render("service.yaml", workers)
    by_name = {p["name"]: p for p in svc["spec"]["ports"]}
    for name, port in metrics.items():
        assert by_name[name]["port"] == port and by_name[name]["targetPort"] == name
    mon = render("servicemonitor.yaml", workers)
    assert {e["port"] for e in mon["spec"]["endpoints"]} == set(metrics)
    assert all(e["interval"] == VALUES["serviceMonitor"]["interval"]
               for e in mon["spec"]["endpoints"])


def test_the_chart_sets_workers_from_its_value_not_settings():
    assert VALUES["workers"] == 1 and "workers" not in VALUES["settings"]


def test_a_manifest_with_workers_declares_every_worker_port():
    checked = 0
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] != "speakerswitch":
                    continue
                env = {e["name"]: e.get("value") for e in c.get("env") or []}
                workers = int(env.get("SPEAKERSWITCH_WORKERS", "1"))
                ports = {p["containerPort"] for p in c["ports"]}
                assert {9100 + i for i in range(workers)} <= ports, (str(path), workers)
                checked += 1
    assert checked >= 2


def test_static_scrape_targets_are_the_scaleout_pods():
    scaleout = ROOT / "deploy" / "kubernetes" / "scaleout"
    svc, sts = [d for d in yaml.safe_load_all((scaleout / "replicas.yaml").read_text())
                if d["kind"] in ("Service", "StatefulSet")]
    metrics = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "metrics")
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "speakerswitch-replicas")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    pods = {f"{sts['metadata']['name']}-{i}.{svc['metadata']['name']}:{metrics}"
            for i in range(sts["spec"]["replicas"])}
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert targets == pods
