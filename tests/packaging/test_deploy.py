"""deploy/: the manifests are a fresh render of the chart's defaults, the
kustomization builds, and the chart's dashboard is deploy/'s."""

from __future__ import annotations

import difflib
import re

import kubernetes_validate
import yaml

from helpers import CHART_DASHBOARD, DASHBOARD, DEPLOY, deploy_manifest, run, tool


def test_deploy_manifests_match_a_fresh_render():
    fresh = deploy_manifest()
    current = (DEPLOY / "hipache.yaml").read_text()
    if fresh != current:
        diff = "".join(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True),
                                            "deploy/hipache.yaml", "fresh render", n=2))
        raise AssertionError("deploy/hipache.yaml is stale: run `scripts/check-packaging --update`\n" + diff[:6000])


def test_deploy_has_no_generated_secret():
    objs = [d for d in yaml.safe_load_all((DEPLOY / "hipache.yaml").read_text()) if d]
    assert not [o for o in objs if o["kind"] == "Secret"], "a Secret (password) would be committed"
    assert {o["kind"] for o in objs} >= {"Deployment", "StatefulSet", "Service", "ConfigMap", "IngressClass",
                                         "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "PodDisruptionBudget"}


def referenced_secrets(objs: list[dict]) -> set[str]:
    """Names of the Secrets the pods of `objs` mount or read variables from."""
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("secret"), dict) and "secretName" in node["secret"]:
                names.add(node["secret"]["secretName"])
            if isinstance(node.get("secretKeyRef"), dict):
                names.add(node["secretKeyRef"]["name"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(objs)
    return names


def test_every_secret_left_out_is_created_by_the_documented_commands():
    objs = [d for d in yaml.safe_load_all((DEPLOY / "hipache.yaml").read_text()) if d]
    included = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    needed = referenced_secrets(objs) - included
    assert {"hipache-redis", "hipache-default-tls"} <= needed, needed
    for doc in (DEPLOY / "README.md", DEPLOY.parent / "README.md"):
        text = doc.read_text()
        created = set(re.findall(r"kubectl -n hipache create secret \w+ ([a-z0-9-]+)", text))
        assert needed <= created, f"{doc.name} does not create {needed - created} before kubectl apply -k"


def test_kustomization_builds_and_validates():
    res = run([tool("kubectl"), "kustomize", str(DEPLOY)])
    assert res.returncode == 0, res.stderr
    objs = [d for d in yaml.safe_load_all(res.stdout) if d]
    kinds = [o["kind"] for o in objs]
    assert "Namespace" in kinds and "Deployment" in kinds
    for o in objs:
        kubernetes_validate.validate(o, "1.33.0", strict=True)
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"):
            assert o["metadata"]["namespace"] == "hipache", o["metadata"]["name"]


def test_chart_dashboard_is_deploy_dashboard():
    assert DASHBOARD.exists(), "deploy/grafana/hipache-dashboard.json is missing"
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes(), \
        "charts/hipache/dashboards/ is stale: run `scripts/check-packaging --update`"
