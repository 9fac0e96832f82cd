"""Every pod in deploy/ (kustomize profiles and the Helm chart) runs without a service-account
token, and every server container has a startupProbe beside its liveness probe (issue 18
item 5). Helm templates are read with their {{ }} lines dropped."""
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def pod_specs():
    for path in sorted(DEPLOY.rglob("*.yaml")):
        text = path.read_text()
        if "{{" in text:
            text = re.sub(r"^.*\{\{.*$\n?", "", text, flags=re.M)
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") in ("Deployment", "StatefulSet",
                                                             "DaemonSet", "Job"):
                yield path.relative_to(ROOT), doc["spec"]["template"]["spec"]


def test_there_are_pods_to_check():
    names = {str(p) for p, _ in pod_specs()}
    assert any("helm" in n for n in names) and any("scaleout" in n for n in names), names


def test_no_pod_mounts_a_service_account_token():
    bad = [str(p) for p, spec in pod_specs() if spec.get("automountServiceAccountToken") is not False]
    assert not bad, bad


def test_server_containers_have_a_startup_probe():
    servers = 0
    for path, spec in pod_specs():
        for c in spec["containers"]:
            if c["name"] == "speakerswitch":
                servers += 1
                assert (c.get("startupProbe") or {}).get("httpGet") \
                    == c["livenessProbe"]["httpGet"], (str(path), c["name"])
    assert servers >= 3


def test_termination_grace_covers_prestop_drain_and_a_margin():
    checked = 0
    for path, spec in pod_specs():
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if c["name"] != "speakerswitch":
                continue
            pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pre >= 5, (str(path), pre)
            if "terminationGracePeriodSeconds" not in spec:     # Helm: templated
                text = (ROOT / path).read_text()
                assert "terminationGracePeriodSeconds: {{ add .Values.graceSeconds 10 }}" in text
                continue
            grace = float(env["SPEAKERSWITCH_GRACE_S"])
            assert spec["terminationGracePeriodSeconds"] >= pre + grace + 5, str(path)
            checked += 1
    assert checked >= 2
