"""Every container image deploy/ names is an exact version (issue 18 item 5): a floating tag
(`latest`, `v1.31-latest`, `7.0`, `3.11-slim`) gives two builds or two nodes different
software under one manifest. A reference passes with a digest (`@sha256:...`) or a tag
holding a full major.minor.patch version."""
import pathlib
import re

import pytest
import yaml

from test_deploy import dockerfile_stages

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
EXACT = re.compile(r"(^|[^0-9.])\d+\.\d+\.\d+([^0-9.]|$)")
FLOATING_WORDS = ("latest", "stable", "edge", "main", "master", "nightly", "dev")


def floating(ref: str) -> str | None:
    """Why ``ref`` is not pinned, or None when it is."""
    if "{{" in ref:
        return None  # a Helm template: its values are checked below
    if re.search(r"@sha256:[0-9a-f]{64}$", ref):
        return None
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag at all (a registry port is not a tag)
        return "no tag: means latest"
    if any(w in tag.lower().split("-") for w in FLOATING_WORDS):
        return f"tag {tag!r} floats"
    if not EXACT.search(tag):
        return f"tag {tag!r} is not a full major.minor.patch version"
    return None


def image_references() -> list[tuple[str, str]]:
    refs = []
    for path in sorted(DEPLOY.rglob("Dockerfile*")):
        stages: set[str] = set()
        for stage in dockerfile_stages(path):
            args = dict(stage)["FROM"].split()
            if args[0] not in stages:  # FROM <an earlier stage> is no image
                refs.append((str(path.relative_to(ROOT)), args[0]))
            if len(args) == 3 and args[1].upper() == "AS":
                stages.add(args[2])
    for path in sorted(list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.yml"))):
        for m in re.finditer(r"^[ \t]*-?[ \t]*image:[ \t]*[\"']?([^\s\"'#]+)",
                             path.read_text(), re.M):
            refs.append((str(path.relative_to(ROOT)), m.group(1)))
    return refs


def test_the_rule_tells_pinned_from_floating():
    for ref in ("envoyproxy/envoy:v1.31-latest", "redis:7.0", "python:3.11-slim", "redis",
                "speakerswitch:latest", "localhost:5000/speakerswitch", "nginx:1.27.0-edge"):
        assert floating(ref), ref
    for ref in ("envoyproxy/envoy:v1.31.10", "redis:7.0.15", "python:3.11.13-slim-bookworm",
                "prom/prometheus:v2.53.0", "localhost:5000/speakerswitch:0.1.0",
                "redis@sha256:" + "a" * 64):
        assert floating(ref) is None, ref


def test_deploy_names_images_to_check():
    where = {w for w, _ in image_references()}
    assert any("Dockerfile" in w for w in where) and any("proxy.yaml" in w for w in where) \
        and any("redis.yaml" in w for w in where) and any("compose.yaml" in w for w in where)


@pytest.mark.parametrize("where,ref", image_references())
def test_no_image_in_deploy_floats(where, ref):
    assert floating(ref) is None, f"{where}: {ref}: {floating(ref)}"


def test_the_chart_and_kustomize_pin_the_speakerswitch_image():
    values = yaml.safe_load((DEPLOY / "helm/speakerswitch/values.yaml").read_text())
    image = values["image"]
    assert floating(f"{image['repository']}:{image['tag']}") is None, image
    kust = yaml.safe_load((DEPLOY / "kubernetes/base/kustomization.yaml").read_text())
    for img in kust.get("images", []):
        assert floating(f"{img['name']}:{img['newTag']}") is None, img
