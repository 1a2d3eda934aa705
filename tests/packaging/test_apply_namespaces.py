"""Plain `kubectl apply -f` of syncer/rbac.yaml and of deploy/, from a
context whose namespace is not `hipache`: every namespaced object must
still land in `hipache`, and every RoleBinding must find its Role there.

The namespace an object lands in is decided by kubectl (the object's own
`metadata.namespace`, else the context's), so kubectl itself decides it
here: `kubectl apply --dry-run=client` with a kubeconfig whose context
namespace is `other`. kubectl cannot do that offline: it asks the API
server which kinds are namespaced (discovery) and reads the live objects
to compute its patch. A small fake API server answers both (the discovery
documents for the kinds below, 404 for every object) and records the paths
kubectl asked for, which name the namespace each object would be written
to. It does not validate (kubectl's `--validate=false`): kubernetes-validate
checks the files strictly instead, as the other packaging tests do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from helpers import DEPLOY, KUBE_VERSIONS, NAMESPACE, ROOT, run, tool

OTHER = "other"

# (group, version) -> [(plural, kind, namespaced)]: the kinds these files
# and the chart's optional objects use, with Kubernetes' own scopes.
SCOPES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [("namespaces", "Namespace", False), ("serviceaccounts", "ServiceAccount", True),
                 ("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("services", "Service", True)],
    ("apps", "v1"): [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True),
                     ("daemonsets", "DaemonSet", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("rbac.authorization.k8s.io", "v1"): [("clusterroles", "ClusterRole", False),
                                          ("clusterrolebindings", "ClusterRoleBinding", False),
                                          ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    ("networking.k8s.io", "v1"): [("ingressclasses", "IngressClass", False), ("ingresses", "Ingress", True),
                                  ("networkpolicies", "NetworkPolicy", True)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True),
                                      ("prometheusrules", "PrometheusRule", True)],
}
NAMESPACED = {(g, k): ns for (g, _), kinds in SCOPES.items() for _, k, ns in kinds}


def discovery(path: str):
    """The legacy discovery document at `path`, or None."""
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                   "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                  for g, v in SCOPES if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for (g, v), kinds in SCOPES.items():
        gv = f"{g}/{v}" if g else v
        if path == (f"/apis/{gv}" if g else f"/api/{v}"):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [{"name": plural, "singularName": "", "kind": kind, "namespaced": ns,
                                   "verbs": ["create", "get", "list", "patch", "update"]}
                                  for plural, kind, ns in kinds]}
    return None


class FakeApiServer:
    """Discovery, and 404 for every object (nothing exists yet); records the
    paths asked for."""

    def __init__(self):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.paths.append(path)
                doc = discovery(path)
                code = 200 if doc else 404
                if doc is None:
                    doc = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                           "code": 404, "message": f"{path} not found"}
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def kubectl_apply(tmp_path: Path, files: list[Path]) -> tuple[list[dict], list[str]]:
    """`kubectl apply --dry-run=client -f FILE...` from a context whose
    namespace is `other`: (the objects as kubectl would send them, the
    paths it asked the API server for)."""
    with FakeApiServer() as api:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": OTHER}}],
            "users": [{"name": "u", "user": {}}],
        }))
        args = [tool("kubectl"), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                "apply", "--dry-run=client", "--validate=false", "-o", "json"]
        for f in files:
            args += ["-f", str(f)]
        res = run(args, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        return (out["items"] if out.get("kind") == "List" else [out]), list(api.paths)


def misplaced(objs: list[dict], paths: list[str]) -> list[str]:
    """Everything that would not land whole in `hipache`."""
    problems = []
    for o in objs:
        group = o["apiVersion"].rpartition("/")[0]
        key = (group, o["kind"])
        assert key in NAMESPACED, f"{key} is missing from SCOPES"
        ns = o["metadata"].get("namespace")
        if NAMESPACED[key] and ns != NAMESPACE:
            problems.append(f"{o['kind']} {o['metadata']['name']} lands in {ns!r}")
    for b in objs:
        if b["kind"] == "RoleBinding" and b["roleRef"]["kind"] == "Role":
            ns = b["metadata"].get("namespace")
            if not any(r["kind"] == "Role" and r["metadata"]["name"] == b["roleRef"]["name"]
                       and r["metadata"].get("namespace") == ns for r in objs):
                problems.append(f"RoleBinding {b['metadata']['name']} in {ns!r}: no Role "
                                f"{b['roleRef']['name']} beside it")
        for s in b.get("subjects") or []:
            if s["kind"] == "ServiceAccount" and s.get("namespace") != NAMESPACE:
                problems.append(f"{b['kind']} {b['metadata']['name']}: subject in {s.get('namespace')!r}")
    # What kubectl itself read before writing: the namespace of each write.
    problems += [f"kubectl reads {p}" for p in paths if f"/namespaces/{OTHER}/" in p]
    return problems


def validate(files: list[Path]) -> None:
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                for version in KUBE_VERSIONS:
                    v = kubernetes_validate.latest_version() if version == "latest" else version
                    kubernetes_validate.validate(doc, v, strict=True)


def test_syncer_rbac_lands_whole_in_hipache(tmp_path):
    rbac = ROOT / "syncer/rbac.yaml"
    validate([rbac])
    objs, paths = kubectl_apply(tmp_path, [rbac])
    assert {o["kind"] for o in objs} >= {"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"}
    assert not misplaced(objs, paths)


def test_deploy_manifests_land_whole_in_hipache(tmp_path):
    files = [DEPLOY / "namespace.yaml", DEPLOY / "hipache.yaml"]
    validate(files)
    objs, paths = kubectl_apply(tmp_path, files)
    assert any(o["kind"] == "Deployment" for o in objs)
    assert not misplaced(objs, paths)


@pytest.mark.parametrize("drop", ["Role", "RoleBinding"])
def test_the_check_catches_an_unpinned_object(tmp_path, drop):
    """The file as it was before (the Role without a namespace), and the
    other way round: the check finds the split."""
    docs = [d for d in yaml.safe_load_all((ROOT / "syncer/rbac.yaml").read_text()) if d]
    for d in docs:
        if d["kind"] == drop:
            del d["metadata"]["namespace"]
    broken = tmp_path / "rbac.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    objs, paths = kubectl_apply(tmp_path, [broken])
    problems = misplaced(objs, paths)
    assert any(f"lands in '{OTHER}'" in p for p in problems), problems
    assert any("no Role" in p for p in problems), problems
