"""The chart's RBAC grants exactly the API calls the syncer makes: the list
kept next to its code (syncer/rbac.yaml, itself checked against
syncer/src/rbac.rs by `cargo test -p hipache-syncer rbac`)."""

from __future__ import annotations

import pytest
import yaml

from helpers import MATRIX, NAMESPACE, ROOT, find, render

LEASES = ("coordination.k8s.io", "leases")


def triples(rules) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert "*" not in (g, r, v), f"wildcard in {rule}"
                    out.add((g, r, v))
    return out


def syncer_calls() -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "syncer/rbac.yaml").read_text()) if d]
    calls = set()
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            calls |= triples(d["rules"])
    assert calls, "syncer/rbac.yaml lists no rule"
    return calls


def granted(objs) -> tuple[set, set]:
    """(cluster-wide grants, namespaced grants) bound to the syncer's ServiceAccount."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("ClusterRole", "Role")}
    cluster, namespaced = set(), set()
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "hipache-syncer", "namespace": NAMESPACE}]
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], ns, ref["name"])]
        t = triples(role["rules"])
        (namespaced if b["kind"] == "RoleBinding" else cluster).update(t)
    return cluster, namespaced


@pytest.mark.parametrize("name,values", [(n, v) for n, v in MATRIX.items() if n != "minimal"],
                         ids=[n for n in MATRIX if n != "minimal"])
def test_chart_rbac_is_exactly_the_syncer_calls(name, values):
    objs = render(values)
    ha = name == "ha-syncer"
    cluster, namespaced = granted(objs)
    want = syncer_calls()
    if not ha:
        want = {t for t in want if t[:2] != LEASES}
    assert cluster | namespaced == want, (
        f"missing: {sorted(want - cluster - namespaced)}; extra: {sorted((cluster | namespaced) - want)}")
    # Leases: only with HA, and only in the release namespace (a Role).
    assert not any(t[:2] == LEASES for t in cluster)
    assert any(t[:2] == LEASES for t in namespaced) == ha
    if ha:
        lease = next(o for o in find(objs, "Role") if o["metadata"]["name"] == "hipache-syncer-lease")
        assert lease["metadata"]["namespace"] == NAMESPACE
        named = [r for r in lease["rules"] if "get" in r["verbs"]]
        assert named[0]["resourceNames"] == ["hipache-syncer-ha"], "get/update limited to our Lease"


def test_namespaced_syncer_gets_roles_not_cluster_wide_access():
    objs = render(MATRIX["namespaced-syncer"])
    cluster, _ = granted(objs)
    assert cluster == {("networking.k8s.io", "ingressclasses", "list"),
                       ("networking.k8s.io", "ingressclasses", "watch")}
    role = next(o for o in find(objs, "Role") if o["metadata"]["name"] == "hipache-syncer")
    assert role["metadata"]["namespace"] == "apps"
    args = next(c for c in find(objs, "Deployment", "hipache-syncer")[0]["spec"]["template"]["spec"]["containers"])["args"]
    assert "--namespace=apps" in args


def test_rbac_check_is_a_real_check():
    objs = render(None)
    cr = next(o for o in objs if o["kind"] == "ClusterRole")
    cr["rules"].append({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]})
    cluster, namespaced = granted(objs)
    assert cluster | namespaced != {t for t in syncer_calls() if t[:2] != LEASES}


def test_minimal_has_no_rbac():
    objs = render(MATRIX["minimal"])
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")]
