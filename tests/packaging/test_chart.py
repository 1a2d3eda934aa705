"""The Helm chart: lint, render across the values matrix, offline validation
of every object against the Kubernetes JSON schemas, the CRD objects, and
what each value must change in the rendered objects."""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helpers import (
    CHART, KUBE_VERSIONS, MATRIX, ROOT, find, helm_args, is_generated, one, render, run, tool,
)

CASES = list(MATRIX.items())
IDS = list(MATRIX)


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_helm_lint_strict(name, values):
    res = run([tool("helm"), "lint", "--strict", str(CHART)] + helm_args(values))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_objects_validate_against_kubernetes_schemas(name, values):
    objs = render(values)
    assert objs, "nothing rendered"
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: test_crd_objects_are_well_formed
        for version in KUBE_VERSIONS:
            v = kubernetes_validate.latest_version() if version == "latest" else version
            try:
                kubernetes_validate.validate(obj, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {v}: "
                            f"{e.message} at {'/'.join(map(str, e.path))}")
        checked += 1
    assert checked >= 5


# Structural schemas of the two Prometheus Operator CRDs we render (their
# OpenAPI schemas are not part of Kubernetes'): the fields we use, required.
RELABEL_CONFIGS = {"type": "array", "items": {
    "type": "object", "additionalProperties": False,
    "properties": {"sourceLabels": {"type": "array", "items": {"type": "string"}},
                   "separator": {"type": "string"}, "targetLabel": {"type": "string"},
                   "regex": {"type": "string"}, "modulus": {"type": "integer"},
                   "replacement": {"type": "string"},
                   "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                                       "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                                       "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal",
                                       "KeepEqual", "dropequal", "DropEqual"]}}}}
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"],
                             "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                                            "additionalProperties": {"type": "string"}}}},
                "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array"}}},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "relabelings": RELABEL_CONFIGS, "metricRelabelings": RELABEL_CONFIGS}}},
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                "properties": {"name": {"type": "string"}, "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["alert", "expr", "for", "labels", "annotations"],
                    "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                                   "expr": {"type": "string"}, "for": {"type": "string", "pattern": "^[0-9]+(s|m|h)$"},
                                   "labels": {"type": "object", "required": ["severity"]},
                                   "annotations": {"type": "object", "required": ["summary", "description"]}}}}}}},
        }},
    },
}


def test_crd_objects_are_well_formed(tmp_path):
    objs = render(MATRIX["monitoring"])
    jsonschema.validate(one(objs, "ServiceMonitor"), SERVICE_MONITOR)
    rule = one(objs, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE)
    # promtool parses every expression (the same rule-file format).
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    res = run([tool("promtool"), "check", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr


def exported_metric_names() -> set[str]:
    names = set(re.findall(r'"(hipache_[a-z0-9_]+)"', (ROOT / "proxy/src/metrics.rs").read_text()))
    names |= set(re.findall(r'"(hipache_syncer_[a-z0-9_]+)"', (ROOT / "syncer/src/metrics.rs").read_text()))
    return names


def test_alerts_cover_the_issue_and_use_real_metrics():
    rule = one(render(MATRIX["monitoring"]), "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules}
    assert {"HipacheHigh5xxRatio", "HipacheRedisUnreachable", "HipacheSyncerNotLeading",
            "HipacheSyncerFailing", "HipacheDeadBackends", "HipacheCertificateExpiringSoon",
            "HipacheCertificateExpired"} <= alerts
    exported = exported_metric_names()
    assert len(exported) > 20, "metric name lists not found"
    for r in rules:
        used = set(re.findall(r"\bhipache_[a-z0-9_]+", r["expr"]))
        assert used, r["alert"]
        assert used <= exported, f"{r['alert']} uses metrics nobody exports: {used - exported}"
    ratio = next(r for r in rules if r["alert"] == "HipacheHigh5xxRatio")
    assert "> 0.02" in ratio["expr"], "errorRatioThreshold not applied"


# promtool's unit test of the certificate alerts: time() starts at 0, so a
# certificate's notAfter is in seconds from the start of the test.
CERT_ALERTS_TEST = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Two pods of the release; one still serves an older default certificate.
      - series: 'hipache_tls_certificate_expiration_timestamp_seconds{namespace="hipache",pod="a",certificate="default"}'
        values: '31536000x180'
      - series: 'hipache_tls_certificate_expiration_timestamp_seconds{namespace="hipache",pod="b",certificate="default"}'
        values: '864000x180'
      - series: 'hipache_tls_certificate_expiration_timestamp_seconds{namespace="hipache",pod="a",certificate="fine.example"}'
        values: '2592000x180'
      - series: 'hipache_tls_certificate_expiration_timestamp_seconds{namespace="hipache",pod="a",certificate="gone.example"}'
        values: '1800x180'
      # Another release's proxy: not this rule's business.
      - series: 'hipache_tls_certificate_expiration_timestamp_seconds{namespace="other",pod="c",certificate="x.example"}'
        values: '0x180'
    alert_rule_test:
      - eval_time: 59m
        alertname: HipacheCertificateExpiringSoon
        exp_alerts: []
      - eval_time: 61m
        alertname: HipacheCertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: warning, namespace: hipache, certificate: default}
          - exp_labels: {severity: warning, namespace: hipache, certificate: gone.example}
      - eval_time: 32m
        alertname: HipacheCertificateExpired
        exp_alerts: []
      - eval_time: 36m
        alertname: HipacheCertificateExpired
        exp_alerts:
          - exp_labels: {severity: critical, namespace: hipache, certificate: gone.example}
"""


def test_certificate_alerts_fire_as_promtool_evaluates_them(tmp_path):
    rule = one(render(MATRIX["monitoring"]), "PrometheusRule")
    groups = []
    for g in rule["spec"]["groups"]:
        rules = [{k: v for k, v in r.items() if k != "annotations"}  # their text is not under test here
                 for r in g["rules"] if r["alert"].startswith("HipacheCertificate")]
        if rules:
            groups.append({"name": g["name"], "rules": rules})
    assert sum(len(g["rules"]) for g in groups) == 2
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "test.yaml").write_text(CERT_ALERTS_TEST)
    res = run([tool("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # The test can fail: a threshold of 40 days makes fine.example fire too.
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}).replace("14 * 86400", "40 * 86400"))
    res = run([tool("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path)
    assert res.returncode != 0 and "fine.example" in res.stdout + res.stderr


def test_monitoring_is_off_by_default_and_selects_both_admin_services():
    default = render(None)
    for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy"):
        assert not find(default, kind), f"{kind} rendered by default"
    objs = render(MATRIX["monitoring"])
    sm = one(objs, "ServiceMonitor")
    selector = sm["spec"]["selector"]["matchLabels"]
    selected = [o for o in find(objs, "Service")
                if all(o["metadata"]["labels"].get(k) == v for k, v in selector.items())]
    assert sorted(o["metadata"]["name"] for o in selected) == ["hipache-admin", "hipache-syncer"]
    for svc in selected:
        assert [p["name"] for p in svc["spec"]["ports"]] == ["admin"]
    assert sm["metadata"]["labels"]["release"] == "prometheus"


def test_grafana_dashboard_configmap():
    objs = render(MATRIX["monitoring"])
    cm = one(objs, "ConfigMap", "hipache-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    dashboard = (ROOT / "deploy/grafana/hipache-dashboard.json").read_text()
    assert cm["data"]["hipache-dashboard.json"].strip() == dashboard.strip()


def dashboard_panels(dashboard: dict) -> list[dict]:
    out, stack = [], list(dashboard["panels"])
    while stack:
        p = stack.pop(0)
        stack += p.get("panels", [])
        if p["type"] != "row":
            out.append(p)
    return out


def test_dashboard_filters_every_query_by_namespace_and_pod():
    dashboard = json.loads((ROOT / "deploy/grafana/hipache-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in ("namespace", "pod"):
        query = variables[name]["query"]["query"]
        assert re.fullmatch(rf"label_values\((hipache_build_info|up)(\{{.*\}})?, {name}\)", query), query
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    selectors = 0
    for panel in dashboard_panels(dashboard):
        for target in panel["targets"]:
            for metric, matchers in re.findall(r"\b([a-z_]+)\{([^}]*)\}", target["expr"]):
                selectors += 1
                assert 'namespace=~"$namespace"' in matchers and 'pod=~"$pod"' in matchers, \
                    f"{panel['title']}: {metric}{{{matchers}}}"
    assert selectors > 50


def test_dashboard_shows_processes_of_both_binaries_and_certificate_expiry():
    dashboard = json.loads((ROOT / "deploy/grafana/hipache-dashboard.json").read_text())
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard_panels(dashboard)}
    for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        (expr,) = [e for es in exprs.values() for e in es if metric in e]
        assert 'job=~"$job|$syncer_job"' in expr, expr  # the proxy and the syncer
        assert "by (job, pod)" in expr
        if metric.endswith("_total"):
            assert f"rate({metric}" in expr
    gauge = "hipache_tls_certificate_expiration_timestamp_seconds"
    cert = [t for t, es in exprs.items() if any(gauge in e and "- time()" in e for e in es)]
    assert sorted(cert) == ["Certificate expiry", "Soonest certificate expiry"]


def proxy_workload(objs):
    found = find(objs, "Deployment", "hipache") + find(objs, "DaemonSet", "hipache")
    assert len(found) == 1
    return found[0]


def container(workload, name):
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_every_pod_is_hardened(name, values):
    for obj in render(values):
        if obj["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "resources" in c and c["resources"].get("requests"), c["name"]
            assert c.get("livenessProbe") and c.get("readinessProbe"), c["name"]


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_proxy_probes_grace_and_drain(name, values):
    objs = render(values)
    w = proxy_workload(objs)
    spec = w["spec"]["template"]["spec"]
    c = container(w, "hipache")
    admin = next(p for p in c["ports"] if p["name"] == "admin")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "admin"}, probe
    config = yaml.safe_load(one(objs, "ConfigMap", "hipache")["data"]["config.yaml"])
    assert config["server"]["adminAddress"] == f"0.0.0.0:{admin['containerPort']}"
    assert config["server"]["workers"] == 0
    drain = config["server"]["drainTimeout"]
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] == sleep + drain + 5
    assert spec["automountServiceAccountToken"] is False


def test_values_reach_the_objects():
    d = render(None)
    w = one(d, "Deployment", "hipache")
    assert w["spec"]["replicas"] == 2
    assert "preferredDuringSchedulingIgnoredDuringExecution" in w["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert one(d, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    svc = one(d, "Service", "hipache")
    assert svc["spec"]["type"] == "LoadBalancer"
    # HTTPS is on by default: Ingress tls: sections are served.
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 80), ("https", 443)]
    assert one(d, "Secret", "hipache-default-tls")["type"] == "kubernetes.io/tls"
    config = yaml.safe_load(one(d, "ConfigMap", "hipache")["data"]["config.yaml"])
    assert config["https"]["cert"] == "/etc/hipache/tls/tls.crt"
    assert "httpsRedirect" not in config["server"]
    # Per-Ingress series for the dashboard, capped.
    assert config["server"]["metricsPerFrontend"] == 500
    ic = one(d, "IngressClass")
    assert ic["spec"]["controller"] == "hipache.io/ingress-controller"
    assert "annotations" not in ic["metadata"]
    assert not find(d, "HorizontalPodAutoscaler")
    sts = one(d, "StatefulSet", "hipache-redis")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"

    ds = render(MATRIX["daemonset"])
    w = one(ds, "DaemonSet", "hipache")
    assert not find(ds, "Deployment", "hipache")
    assert "replicas" not in w["spec"]
    http = next(p for p in container(w, "hipache")["ports"] if p["name"] == "http")
    assert http["hostPort"] == 80
    svc = one(ds, "Service", "hipache")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080

    a = render(MATRIX["autoscaling"])
    hpa = one(a, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert len(hpa["spec"]["metrics"]) == 2
    w = one(a, "Deployment", "hipache")
    assert "replicas" not in w["spec"], "the HPA owns replicas"
    spec = w["spec"]["template"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in spec["affinity"]["podAntiAffinity"]
    assert spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "proxy"
    assert spec["terminationGracePeriodSeconds"] == 75
    ic = one(a, "IngressClass", "hipache-public")
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert "volumeClaimTemplates" not in one(a, "StatefulSet")["spec"]

    t = render(MATRIX["tls"])
    svc = one(t, "Service", "hipache")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 80), ("https", 443)]
    secret = one(t, "Secret", "hipache-default-tls")
    assert secret["type"] == "kubernetes.io/tls"
    config = yaml.safe_load(one(t, "ConfigMap", "hipache")["data"]["config.yaml"])
    assert config["https"]["cert"] == "/etc/hipache/tls/tls.crt"
    assert config["server"]["httpsRedirect"] is True
    assert config["server"]["staticDir"] == "/etc/hipache/errors"
    pages = one(t, "ConfigMap", "hipache-error-pages")["data"]
    assert sorted(pages) == ["error_502.html", "error_default.html"]

    n = render(MATRIX["networkpolicy"])
    assert sorted(o["metadata"]["name"] for o in find(n, "NetworkPolicy")) == ["hipache", "hipache-redis", "hipache-syncer"]
    redis_np = one(n, "NetworkPolicy", "hipache-redis")
    peers = redis_np["spec"]["ingress"][0]["from"]
    assert len(peers) == 3 and peers[2]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "legacy-tenants"
    assert not find(n, "Secret", "hipache-default-tls"), "an existing certificate Secret was named"
    vol = next(v for v in proxy_workload(n)["spec"]["template"]["spec"]["volumes"] if v["name"] == "default-tls")
    assert vol["secret"]["secretName"] == "wildcard-example-com"

    m = render(MATRIX["minimal"])
    assert not find(m, "Deployment", "hipache-syncer") and not find(m, "IngressClass")
    assert not find(m, "ClusterRole") and not find(m, "PodDisruptionBudget") and not find(m, "Secret")
    config = yaml.safe_load(one(m, "ConfigMap", "hipache")["data"]["config.yaml"])
    assert config["server"]["accessLog"] is False and "https" not in config
    assert [p["name"] for p in one(m, "Service", "hipache")["spec"]["ports"]] == ["http"]


def env_of(c):
    return {e["name"]: e for e in c["env"]}


def test_redis_password_comes_from_a_secret_never_the_spec():
    d = render(None)
    secret = one(d, "Secret", "hipache-redis")
    assert secret["metadata"]["annotations"]["hipache.io/generated"] == "true"
    assert sorted(secret["data"]) == ["admin-password", "proxy-password", "syncer-password"]
    for name, cname, var, pw, user in (("hipache", "hipache", "HIPACHE_DRIVER", "HIPACHE_REDIS_PASSWORD", "proxy"),
                                       ("hipache-syncer", "hipache-syncer", "HIPACHE_SYNCER_REDIS_URL",
                                        "HIPACHE_SYNCER_REDIS_PASSWORD", "syncer")):
        env = env_of(container(one(d, "Deployment", name), cname))
        # Each binary logs in as its own ACL user (test_redis_acl.py).
        assert env[pw]["valueFrom"]["secretKeyRef"] == {"name": "hipache-redis", "key": f"{user}-password"}
        # The password is never in the URL, so it needs no escaping.
        assert env[var]["value"] == f"redis://{user}:@hipache-redis.hipache.svc:6379/0"
    redis_env = env_of(container(one(d, "StatefulSet", "hipache-redis"), "redis"))
    assert redis_env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "hipache-redis", "key": "admin-password"}

    e = render(MATRIX["external-redis"])
    assert not find(e, "StatefulSet") and not find(e, "Secret", "hipache-redis")
    env = env_of(container(one(e, "Deployment", "hipache"), "hipache"))
    assert env["HIPACHE_DRIVER"]["value"] == "rediss://hipache:@redis.example.internal:6380/2#tenant1"
    assert env["HIPACHE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-credentials", "key": "password"}
    # Separate users for the proxy and the syncer, each from its own Secret.
    e = render(MATRIX["external-redis"], ("redis.external.syncer.username=hipache-syncer",
                                          "redis.external.syncer.existingSecret=syncer-credentials"))
    env = env_of(container(one(e, "Deployment", "hipache"), "hipache"))
    assert env["HIPACHE_DRIVER"]["value"] == "rediss://hipache:@redis.example.internal:6380/2#tenant1"
    env = env_of(container(one(e, "Deployment", "hipache-syncer"), "hipache-syncer"))
    assert env["HIPACHE_SYNCER_REDIS_URL"]["value"] == "rediss://hipache-syncer:@redis.example.internal:6380/2#tenant1"
    assert env["HIPACHE_SYNCER_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "syncer-credentials",
                                                                                  "key": "password"}

    m = render(MATRIX["minimal"])
    env = env_of(container(one(m, "Deployment", "hipache"), "hipache"))
    assert "HIPACHE_REDIS_PASSWORD" not in env
    assert env["HIPACHE_DRIVER"]["value"] == "redis://hipache-redis.hipache.svc:6379/0"


def test_syncer_deployment_follows_ha():
    d = one(render(None), "Deployment", "hipache-syncer")
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
    assert "--no-leader-election" in container(d, "hipache-syncer")["args"]
    ha = one(render(MATRIX["ha-syncer"]), "Deployment", "hipache-syncer")
    assert ha["spec"]["replicas"] == 3 and ha["spec"]["strategy"]["type"] == "RollingUpdate"
    args = container(ha, "hipache-syncer")["args"]
    assert "--no-leader-election" not in args
    assert "--lease-name=hipache-syncer-ha" in args and "--lease-namespace=hipache" in args
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container(ha, "hipache-syncer")[probe]["httpGet"] == {"path": path, "port": "admin"}


WRONG_VALUES = [
    (["proxy.kind=StatefulSet"], "/proxy/kind"),
    (["proxy.replicas=-1"], "/proxy/replicas"),
    (["proxy.replica=3"], "replica"),
    (["proxy.service.type=ExternalName"], "/proxy/service/type"),
    (["proxy.podAntiAffinity=always"], "/proxy/podAntiAffinity"),
    (["proxy.drainTimeout=0"], "/proxy/drainTimeout"),
    (["proxy.containerPorts.http=80"], "/proxy/containerPorts/http"),
    (["proxy.config.tcpTimout=30"], "tcpTimout"),
    (["proxy.config.routeCache=lru"], "/proxy/config/routeCache"),
    (["proxy.config.workers=4"], "workers"),
    (["proxy.errorPages.enabled=true", "proxy.errorPages.pages.oops\\.html=x"], "oops.html"),
    (["proxy.https.enabled=false", "proxy.https.redirect=true"], "proxy.https.redirect"),
    (["proxy.kind=DaemonSet", "proxy.autoscaling.enabled=true"], "proxy.autoscaling.enabled"),
    (["syncer.backendMode=nodeport"], "/syncer/backendMode"),
    (["syncer.ha.replicas=1"], "/syncer/ha/replicas"),
    (["syncer.healthChecks.path=health"], "/syncer/healthChecks/path"),
    (["syncer.resyncSeconds=0"], "/syncer/resyncSeconds"),
    (["ingressClass.name=Not_A_Name"], "/ingressClass/name"),
    (["redis.mode=cluster"], "/redis/mode"),
    (["redis.mode=external"], "/redis/external"),
    (["redis.mode=external", "redis.external.url=redis://:secret@redis:6379"], "/redis/external/url"),
    (["redis.persistence.size=lots"], "/redis/persistence/size"),
    (["redis.auth.tenants[0].name=acme"], "/redis/auth/tenants/0"),
    (["redis.auth.tenants[0].name=proxy", "redis.auth.tenants[0].hosts={proxy.example}",
      "redis.auth.tenants[0].existingSecret=s"], "redis.auth.tenants"),
    (["redis.auth.tenants[0].name=a b", "redis.auth.tenants[0].hosts={a.example}",
      "redis.auth.tenants[0].existingSecret=s"], "/redis/auth/tenants/0/name"),
    (["redis.auth.passwordKeys.proxy="], "/redis/auth/passwordKeys/proxy"),
    (["redis.auth.enabled=false", "redis.auth.tenants[0].name=acme", "redis.auth.tenants[0].hosts={acme.example}",
      "redis.auth.tenants[0].existingSecret=s"], "redis.auth.tenants needs redis.auth.enabled"),
    (["redis.external.proxy.username=a:b"], "/redis/external/proxy/username"),
    (["metrics.prometheusRule.errorRatioThreshold=2"], "/metrics/prometheusRule/errorRatioThreshold"),
    (["networkPolicy.enabled=yes"], "/networkPolicy/enabled"),
    (["redis.ha.enabled=true", "redis.ha.replicas=2"], "/redis/ha/replicas"),
    (["redis.ha.enabled=true", "redis.ha.quorum=4"], "redis.ha.quorum (4) is more than redis.ha.replicas (3)"),
    (["redis.ha.readFrom=any"], "/redis/ha/readFrom"),
    (["redis.ha.masterName=a/b"], "/redis/ha/masterName"),
    (["redis.ha.enabled=true", "redis.auth.tenants[0].name=sentinel", "redis.auth.tenants[0].hosts={a.example}",
      "redis.auth.tenants[0].existingSecret=s"], "redis.auth.tenants"),
    (["redis.mode=external", "redis.external.url=redis+sentinel://u:p@s1/m"], "/redis/external/url"),
    (["redis.mode=external", "redis.external.url=redis+sentinel://s1\\,s2/m?sentinel_password=x"],
     "must not hold sentinel_password"),
    (["redis.mode=external", "redis.external.url=redis+sentinel://s1\\,s2"], "/redis/external/url"),
]


@pytest.mark.parametrize("sets,needle", WRONG_VALUES, ids=[s[0] for s, _ in WRONG_VALUES])
def test_wrong_values_are_rejected_with_a_clear_message(sets, needle):
    args = [tool("helm"), "template", "t", str(CHART)]
    for s in sets:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0, f"accepted: {sets}"
    assert needle in res.stderr, res.stderr


def helm_template_twice(values_file):
    """Two independent renders (no cache), as a GitOps tool makes them."""
    out = []
    for _ in range(2):
        res = run([tool("helm"), "template", "hipache", str(CHART), "--namespace", "hipache"]
                  + helm_args(values_file))
        assert res.returncode == 0, res.stderr
        out.append(res.stdout)
    return out


def test_gitops_values_render_no_generated_secret_and_are_stable():
    first, second = helm_template_twice(MATRIX["gitops"])
    assert first == second, "two renders with the existing-Secret values differ"
    objs = render(MATRIX["gitops"])
    assert not [o for o in objs if is_generated(o)]
    assert not find(objs, "Secret"), "with every existing Secret named, the chart renders none"
    proxy = proxy_workload(objs)
    vol = next(v for v in proxy["spec"]["template"]["spec"]["volumes"] if v["name"] == "default-tls")
    assert vol["secret"]["secretName"] == "hipache-default-certificate"
    env = env_of(container(proxy, "hipache"))
    assert env["HIPACHE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "hipache-redis-users",
                                                                           "key": "proxy-password"}
    redis = one(objs, "StatefulSet", "hipache-redis")
    users = next(v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == "users")
    assert users["projected"]["sources"][0]["secret"]["name"] == "hipache-redis-users"
    # The comparison can fail: the defaults generate passwords and a
    # certificate anew at each render.
    first, second = helm_template_twice(None)
    assert first != second
    assert {o["metadata"]["name"] for o in render(None) if is_generated(o)} == {"hipache-redis", "hipache-default-tls"}


def install_notes(*sets: str, values_file: str | None = None) -> str:
    args = [tool("helm"), "install", "hipache", str(CHART), "--dry-run=client", "--namespace", "hipache"]
    res = run(args + helm_args(values_file, sets))
    assert res.returncode == 0, res.stderr
    return res.stdout.partition("NOTES:")[2]


def test_notes_tell_gitops_users_to_name_existing_secrets():
    notes = install_notes()
    assert "GitOps users must" in notes
    assert "Secret hipache-redis (Redis passwords): set redis.auth.existingSecret" in notes
    assert "Secret hipache-default-tls (default certificate): set proxy.https.defaultCertificateSecret" in notes
    notes = install_notes("redis.auth.existingSecret=mine")
    assert "GitOps users must" in notes and "redis.auth.existingSecret" not in notes
    assert "GitOps" not in install_notes(values_file=MATRIX["gitops"])


def test_notes_are_loud_when_https_is_disabled():
    assert "tls: sections will not be served" not in install_notes()
    notes = install_notes("proxy.https.enabled=false")
    assert "WARNING: HTTPS is disabled" in notes and "Ingress tls: sections will not be served" in notes


def test_notes_tell_how_to_reach_the_proxy_and_add_an_ingress():
    notes = (CHART / "templates/NOTES.txt").read_text()
    for needle in ("kubectl create ingress", "--class=", "redis-cli", "loadBalancer.ingress", "nodePort", "port-forward"):
        assert needle in notes, needle
    res = run([tool("helm"), "install", "hipache", str(CHART), "--dry-run=client", "--namespace", "hipache"])
    assert res.returncode == 0, res.stderr
    assert "kubectl create ingress hello --class=hipache" in res.stdout


# --- values operators expect ---------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


def image_of(objs, kind, name, cname):
    return container(one(objs, kind, name), cname)["image"]


def test_images_have_registry_tag_and_digest():
    d = render(None)
    assert image_of(d, "Deployment", "hipache", "hipache") == "ghcr.io/hipache/hipache:0.1.0"
    assert image_of(d, "Deployment", "hipache-syncer", "hipache-syncer") == "ghcr.io/hipache/hipache-syncer:0.1.0"
    # The internal Redis is pinned to an exact version, not a moving tag.
    assert re.fullmatch(r"docker\.io/library/redis:\d+\.\d+\.\d+-alpine",
                        image_of(d, "StatefulSet", "hipache-redis", "redis"))
    m = render(None, ("proxy.image.registry=mirror.example:5000", "proxy.image.tag=1.2.3",
                      f"syncer.image.digest={DIGEST}", "syncer.image.tag=1.2.3",
                      "redis.image.registry=", "redis.image.repository=mirror.example/redis",
                      f"redis.image.digest={DIGEST}"))
    assert image_of(m, "Deployment", "hipache", "hipache") == "mirror.example:5000/hipache/hipache:1.2.3"
    # The digest wins over the tag.
    assert image_of(m, "Deployment", "hipache-syncer", "hipache-syncer") == f"ghcr.io/hipache/hipache-syncer@{DIGEST}"
    assert image_of(m, "StatefulSet", "hipache-redis", "redis") == f"mirror.example/redis@{DIGEST}"


def test_valkey_flavor_switches_the_image_and_the_binaries():
    v = render(None, ("redis.flavor=valkey",))
    c = container(one(v, "StatefulSet", "hipache-redis"), "redis")
    assert re.fullmatch(r"docker\.io/valkey/valkey:\d+\.\d+\.\d+-alpine", c["image"])
    script = c["command"][2]
    assert "exec valkey-server /etc/redis/redis.conf" in script and "redis-server" not in script
    assert c["readinessProbe"]["exec"]["command"][2].startswith("valkey-cli --user admin ")
    assert {"REDISCLI_AUTH", "VALKEYCLI_AUTH"} <= set(env_of(c))
    # The same configuration and ACL users as Redis.
    d = render(None)
    assert one(v, "ConfigMap", "hipache-redis")["data"] == one(d, "ConfigMap", "hipache-redis")["data"]
    res = run([tool("helm"), "install", "hipache", str(CHART), "--dry-run=client", "--namespace", "hipache",
               "--set", "redis.flavor=valkey"])
    assert "valkey-cli --user admin rpush" in res.stdout


def redis_conf(objs) -> list[str]:
    return one(objs, "ConfigMap", "hipache-redis")["data"]["redis.conf"].splitlines()


def test_redis_maxmemory_is_under_the_memory_limit_and_never_evicts():
    conf = redis_conf(render(None))
    # 75 % of the default 512Mi limit.
    assert "maxmemory 402653184" in conf and "maxmemory-policy noeviction" in conf
    conf = redis_conf(render(None, ("redis.resources.limits.memory=2Gi", "redis.maxmemoryPercent=50")))
    assert "maxmemory 1073741824" in conf
    conf = redis_conf(render(None, ("redis.maxmemory=100mb",)))
    assert "maxmemory 100mb" in conf and "maxmemory-policy noeviction" in conf
    for sets in (("redis.maxmemoryPercent=0",), ("redis.resources.limits=null",)):
        assert not [line for line in redis_conf(render(None, sets)) if "maxmemory" in line], sets


def test_extra_args_and_volumes_reach_both_binaries():
    objs = render(None, ("proxy.extraArgs={--flag-a,--flag-b=1}", "syncer.extraArgs={--log-json}",
                         "proxy.extraVolumes[0].name=ca", "proxy.extraVolumes[0].secret.secretName=redis-ca",
                         "proxy.extraVolumeMounts[0].name=ca", "proxy.extraVolumeMounts[0].mountPath=/etc/ca",
                         "syncer.extraVolumes[0].name=ca", "syncer.extraVolumes[0].secret.secretName=redis-ca",
                         "syncer.extraVolumeMounts[0].name=ca", "syncer.extraVolumeMounts[0].mountPath=/etc/ca"))
    proxy = container(one(objs, "Deployment", "hipache"), "hipache")
    assert proxy["args"][-2:] == ["--flag-a", "--flag-b=1"]
    assert proxy["args"][0] == "--config=/etc/hipache/config.yaml"
    syncer_d = one(objs, "Deployment", "hipache-syncer")
    syncer = container(syncer_d, "hipache-syncer")
    assert syncer["args"][-1] == "--log-json"
    for w, c in ((one(objs, "Deployment", "hipache"), proxy), (syncer_d, syncer)):
        assert {"name": "ca", "secret": {"secretName": "redis-ca"}} in w["spec"]["template"]["spec"]["volumes"]
        assert {"name": "ca", "mountPath": "/etc/ca"} in c["volumeMounts"]
    assert "volumes" not in one(render(None), "Deployment", "hipache-syncer")["spec"]["template"]["spec"]


def test_ingress_nginx_switches_reach_the_syncer_and_are_off_by_default():
    args = container(one(render(None), "Deployment", "hipache-syncer"), "hipache-syncer")["args"]
    assert "--nginx-class" not in args and "--serve-unsupported-protections" not in args
    objs = render(None, ("syncer.nginxClass=true", "syncer.serveUnsupportedProtections=true"))
    args = container(one(objs, "Deployment", "hipache-syncer"), "hipache-syncer")["args"]
    assert "--nginx-class" in args and "--serve-unsupported-protections" in args
    # The binary takes them (it validates its flags and exits).
    res = run([str(Path(os.environ["HIPACHE_BIN_DIR"]) / "hipache-syncer"), "--check-config",
               "--nginx-class", "--serve-unsupported-protections"])
    assert res.returncode == 0, res.stderr


def render_values(tmp_path, values: dict) -> list[dict]:
    """The objects rendered with `values` (a values file of its own, for
    what --set cannot spell)."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    res = run([tool("helm"), "template", "hipache", str(CHART), "--namespace", "hipache", "-f", str(path)])
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def test_extra_objects_are_rendered_with_tpl(tmp_path):
    objs = render_values(tmp_path, {"extraObjects": [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": '{{ include "hipache.fullname" . }}-extra', "namespace": "{{ .Release.Namespace }}"}},
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-raw\n",
    ]})
    cm = one(objs, "ConfigMap", "hipache-extra")
    assert cm["metadata"]["namespace"] == "hipache"
    assert one(objs, "Secret", "hipache-raw")["apiVersion"] == "v1"


def pod_spec(objs, kind, name):
    return one(objs, kind, name)["spec"]["template"]["spec"]


WORKLOADS = (("Deployment", "hipache", "hipache"), ("Deployment", "hipache-syncer", "hipache-syncer"),
             ("StatefulSet", "hipache-redis", "redis"))


def test_security_contexts_are_values():
    d = render(None)
    uids = {name: pod_spec(d, kind, name)["securityContext"].get("runAsUser") for kind, name, _ in WORKLOADS}
    assert uids == {"hipache": 65532, "hipache-syncer": 65532, "hipache-redis": 999}
    objs = render(None, ("proxy.podSecurityContext.runAsUser=1000", "proxy.podSecurityContext.supplementalGroups={2000}",
                         "syncer.securityContext.readOnlyRootFilesystem=false",
                         "redis.securityContext.capabilities=null"))
    proxy = pod_spec(objs, "Deployment", "hipache")["securityContext"]
    assert proxy["runAsUser"] == 1000 and proxy["runAsNonRoot"] is True and proxy["supplementalGroups"] == [2000]
    assert container(one(objs, "Deployment", "hipache-syncer"), "hipache-syncer")["securityContext"]["readOnlyRootFilesystem"] is False
    assert "capabilities" not in container(one(objs, "StatefulSet", "hipache-redis"), "redis")["securityContext"]


def test_openshift_render_sets_no_uid_and_keeps_the_hardening():
    """OpenShift's restricted SCC assigns UIDs: with the UID fields unset
    (ci/openshift-values.yaml) no pod names one; test_every_pod_is_hardened
    checks the rest for this render too."""
    objs = render(MATRIX["openshift"])
    for kind, name, cname in WORKLOADS:
        spec = pod_spec(objs, kind, name)
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(spec["securityContext"]), name
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert "runAsUser" not in c["securityContext"] and "runAsGroup" not in c["securityContext"]


def test_dual_stack_service():
    svc = one(render(None), "Service", "hipache")
    assert "ipFamilyPolicy" not in svc["spec"] and "ipFamilies" not in svc["spec"]
    svc = one(render(None, ("proxy.service.ipFamilyPolicy=PreferDualStack", "proxy.service.ipFamilies={IPv6,IPv4}")),
              "Service", "hipache")
    assert svc["spec"]["ipFamilyPolicy"] == "PreferDualStack" and svc["spec"]["ipFamilies"] == ["IPv6", "IPv4"]


def test_service_monitor_relabelings():
    sm = one(render(MATRIX["monitoring"]), "ServiceMonitor")
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["relabelings"] == [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    endpoint = one(render(MATRIX["monitoring"], ("metrics.serviceMonitor.relabelings=null",
                                                 "metrics.serviceMonitor.metricRelabelings=null")),
                   "ServiceMonitor")["spec"]["endpoints"][0]
    assert "relabelings" not in endpoint and "metricRelabelings" not in endpoint


def test_topology_spread_for_syncer_and_redis():
    sets = []
    for component in ("syncer", "redis"):
        sets += [f"{component}.topologySpreadConstraints[0].maxSkew=1",
                 f"{component}.topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
                 f"{component}.topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway"]
    objs = render(None, tuple(sets))
    for kind, name, component in (("Deployment", "hipache-syncer", "syncer"), ("StatefulSet", "hipache-redis", "redis")):
        (tsc,) = pod_spec(objs, kind, name)["topologySpreadConstraints"]
        assert tsc["topologyKey"] == "topology.kubernetes.io/zone"
        assert tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert "topologySpreadConstraints" not in pod_spec(render(None), kind, name)


CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "IngressClass")


def cluster_scoped(objs) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in CLUSTER_SCOPED}


def test_two_releases_in_one_cluster_do_not_collide():
    # The same release name in two namespaces: RBAC names carry the namespace.
    a = render(None, ("ingressClass.create=false",), release="edge", namespace="team-a")
    b = render(None, ("ingressClass.create=false",), release="edge", namespace="team-b")
    assert cluster_scoped(a) and not cluster_scoped(a) & cluster_scoped(b)
    crb = one(a, "ClusterRoleBinding")
    assert crb["metadata"]["name"] == "edge-hipache-syncer-team-a"
    assert crb["roleRef"]["name"] == one(a, "ClusterRole")["metadata"]["name"]
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "edge-hipache-syncer", "namespace": "team-a"}]
    # Two releases, each with its own IngressClass and controller string,
    # passed to its syncer.
    public = render(None, release="public", namespace="ingress")
    internal = render(None, ("ingressClass.name=hipache-internal",
                             "ingressClass.controller=hipache.io/ingress-controller-internal"),
                      release="internal", namespace="ingress")
    assert not cluster_scoped(public) & cluster_scoped(internal)
    for objs, name, controller in ((public, "hipache", "hipache.io/ingress-controller"),
                                   (internal, "hipache-internal", "hipache.io/ingress-controller-internal")):
        assert one(objs, "IngressClass")["spec"]["controller"] == controller
        release = objs[0]["metadata"]["labels"]["app.kubernetes.io/instance"]
        args = container(one(objs, "Deployment", f"{release}-hipache-syncer"), "hipache-syncer")["args"]
        assert f"--controller={controller}" in args and f"--ingress-class={name}" in args
    # Namespaced objects of two releases in one namespace differ by name,
    # the HA Lease included.
    ha = ("syncer.ha.enabled=true",)
    p = render(None, ha, release="public", namespace="ingress")
    i = render(None, ha + ("ingressClass.name=hipache-internal",
                           "ingressClass.controller=hipache.io/ingress-controller-internal"),
               release="internal", namespace="ingress")
    names = lambda objs: {(o["kind"], o["metadata"]["name"]) for o in objs}  # noqa: E731
    assert not names(p) & names(i)
    lease = lambda objs, rel: next(a for a in container(one(objs, "Deployment", f"{rel}-hipache-syncer"),  # noqa: E731
                                                        "hipache-syncer")["args"] if a.startswith("--lease-name="))
    assert lease(p, "public") == "--lease-name=public-hipache-syncer"
    assert lease(i, "internal") == "--lease-name=internal-hipache-syncer"


# --- Redis high availability (redis.ha) ----------------------------------------

HA = MATRIX["redis-ha"]
HA_HOSTS = [f"hipache-redis-{i}.hipache-redis-headless.hipache.svc" for i in range(3)]
HA_SENTINELS = ",".join(f"{h}:26379" for h in HA_HOSTS)


def validate(objs: list[dict]) -> None:
    for obj in objs:
        for version in KUBE_VERSIONS:
            v = kubernetes_validate.latest_version() if version == "latest" else version
            kubernetes_validate.validate(obj, v, strict=True)


def test_redis_ha_is_a_statefulset_of_redis_and_sentinel_pods():
    objs = render(HA)
    sts = one(objs, "StatefulSet", "hipache-redis")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "hipache-redis-headless"
    spec = sts["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["config"]
    assert [c["name"] for c in spec["containers"]] == ["redis", "sentinel"]
    redis, sentinel = spec["containers"]
    assert redis["image"] == sentinel["image"] == spec["initContainers"][0]["image"]
    assert redis["command"][2].rstrip().endswith("exec redis-server /run/redis/redis.conf")
    assert sentinel["command"] == ["redis-server", "/run/sentinel/sentinel.conf", "--sentinel"]
    assert [p["containerPort"] for p in sentinel["ports"]] == [26379]
    # Ready: a master, or a replica whose link to its master is up.
    assert "master_link_status:up" in redis["readinessProbe"]["exec"]["command"][2]
    assert sts["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "redis"
    # A PVC per pod, as without HA.
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"

    headless = one(objs, "Service", "hipache-redis-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert [(p["name"], p["port"]) for p in headless["spec"]["ports"]] == [("redis", 6379), ("sentinel", 26379)]
    # The Service offers the Sentinels only: its Redis port would reach
    # replicas as often as the master.
    assert [(p["name"], p["port"]) for p in one(objs, "Service", "hipache-redis")["spec"]["ports"]] == [("sentinel", 26379)]

    pdb = one(objs, "PodDisruptionBudget", "hipache-redis")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"

    data = one(objs, "ConfigMap", "hipache-redis")["data"]
    users = {line.split()[1]: line for line in data["users.acl"].splitlines()}
    assert users["replication"].endswith("+psync +replconf +ping")
    assert "&__sentinel__:hello" in users["sentinel"] and "~" not in users["sentinel"]
    assert "maxmemory 402653184" in data["redis.conf"] and "maxmemory-policy noeviction" in data["redis.conf"]
    sentinel_conf = data["sentinel.conf"].splitlines()
    assert "sentinel resolve-hostnames yes" in sentinel_conf and "sentinel announce-hostnames yes" in sentinel_conf
    script = spec["initContainers"][0]["command"][2]
    for needle in ('me="$POD_NAME.hipache-redis-headless.hipache.svc"', "replica-announce-ip $me",
                   "sentinel announce-ip $me", "masteruser replication", "sentinel auth-user $name sentinel",
                   "sentinel monitor $name $master 6379 2", "down-after-milliseconds $name 5000",
                   "failover-timeout $name 60000", "fallback=hipache-redis-0.hipache-redis-headless.hipache.svc",
                   "get-master-addr-by-name", "requirepass"):
        assert needle in script, needle
    users_vol = next(v for v in spec["volumes"] if v["name"] == "users")
    items = {i["path"]: i["key"] for i in users_vol["projected"]["sources"][0]["secret"]["items"]}
    assert items["replication"] == "replication-password" and items["sentinel"] == "sentinel-user-password"
    secret = one(objs, "Secret", "hipache-redis")
    assert {"replication-password", "sentinel-user-password", "sentinel-password"} <= set(secret["data"])
    sentinel_key = {"name": "hipache-redis", "key": "sentinel-password"}
    assert env_of(sentinel)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == sentinel_key
    for c in (spec["initContainers"][0], redis):
        # To ask the Sentinels for the master (redis-cli's own variable is
        # the admin password in the Redis container).
        assert env_of(c)["SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == sentinel_key
        assert 'REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli' in c["command"][2]
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password"
    # A restarted Redis container chooses its master again, and may wait
    # for a failover before it listens: the startup probe allows it.
    assert "if [ -e /run/redis/started ]; then" in redis["command"][2]
    assert redis["startupProbe"]["periodSeconds"] * redis["startupProbe"]["failureThreshold"] > 65

    # Values reach the objects.
    objs = render(None, ("redis.ha.enabled=true", "redis.ha.replicas=5", "redis.ha.quorum=3",
                         "redis.ha.masterName=edge", "redis.ha.podAntiAffinity=hard",
                         "redis.ha.podDisruptionBudget.maxUnavailable=2", "redis.persistence.enabled=false"))
    sts = one(objs, "StatefulSet", "hipache-redis")
    spec = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 5 and "volumeClaimTemplates" not in sts["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in spec["affinity"]["podAntiAffinity"]
    script = spec["initContainers"][0]["command"][2]
    assert "name=edge" in script and "6379 3" in script and "hipache-redis-4.hipache-redis-headless" in script
    assert one(objs, "PodDisruptionBudget", "hipache-redis")["spec"]["maxUnavailable"] == 2
    assert not find(render(None, ("redis.ha.enabled=true", "redis.ha.podDisruptionBudget.enabled=false")),
                    "PodDisruptionBudget", "hipache-redis")


def test_redis_ha_binaries_find_the_master_through_every_sentinel():
    objs = render(HA)
    for name, var, pw, sentinel_pw, user in (
            ("hipache", "HIPACHE_DRIVER", "HIPACHE_REDIS_PASSWORD", "HIPACHE_SENTINEL_PASSWORD", "proxy"),
            ("hipache-syncer", "HIPACHE_SYNCER_REDIS_URL", "HIPACHE_SYNCER_REDIS_PASSWORD",
             "HIPACHE_SYNCER_SENTINEL_PASSWORD", "syncer")):
        env = env_of(container(one(objs, "Deployment", name), name))
        assert env[var]["value"] == f"redis+sentinel://{user}:@{HA_SENTINELS}/hipache/0"
        # The data nodes' password as before, the Sentinels' from the Secret.
        assert env[pw]["valueFrom"]["secretKeyRef"] == {"name": "hipache-redis", "key": f"{user}-password"}
        assert env[sentinel_pw]["valueFrom"]["secretKeyRef"] == {"name": "hipache-redis", "key": "sentinel-password"}
    # read_from for the proxy only; the prefix and database as without HA;
    # an existing Secret holds the Sentinels' password too.
    objs = render(None, ("redis.ha.enabled=true", "redis.ha.readFrom=master", "redis.keyPrefix=edge:",
                         "redis.database=3", "redis.auth.existingSecret=mine"))
    proxy = env_of(container(one(objs, "Deployment", "hipache"), "hipache"))
    syncer = env_of(container(one(objs, "Deployment", "hipache-syncer"), "hipache-syncer"))
    assert proxy["HIPACHE_DRIVER"]["value"] == f"redis+sentinel://proxy:@{HA_SENTINELS}/hipache/3?read_from=master#edge%3A"
    assert syncer["HIPACHE_SYNCER_REDIS_URL"]["value"] == f"redis+sentinel://syncer:@{HA_SENTINELS}/hipache/3#edge%3A"
    assert proxy["HIPACHE_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "sentinel-password"}
    assert not find(objs, "Secret", "hipache-redis")
    # Without auth: no user, no password.
    objs = render(None, ("redis.ha.enabled=true", "redis.auth.enabled=false"))
    proxy = env_of(container(one(objs, "Deployment", "hipache"), "hipache"))
    assert proxy["HIPACHE_DRIVER"]["value"] == f"redis+sentinel://{HA_SENTINELS}/hipache/0"
    assert "HIPACHE_SENTINEL_PASSWORD" not in proxy and "HIPACHE_REDIS_PASSWORD" not in proxy
    script = pod_spec(objs, "StatefulSet", "hipache-redis")["initContainers"][0]["command"][2]
    assert "requirepass" not in script and "masterauth" not in script
    validate(objs)


def test_redis_ha_network_policy_opens_the_sentinel_port():
    np = one(render(HA), "NetworkPolicy", "hipache-redis")
    components = lambda rule: sorted(p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]  # noqa: E731
                                     for p in rule["from"] if "podSelector" in p)
    by_port: dict = {}
    for r in np["spec"]["ingress"]:
        for p in r["ports"]:
            by_port.setdefault(p["port"], set()).update(components(r))
    assert by_port == {"redis": {"proxy", "syncer", "redis"}, "sentinel": {"proxy", "syncer", "redis"}}
    egress = np["spec"]["egress"]
    to_redis = next(e for e in egress if "to" in e)
    assert to_redis["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert sorted(p["port"] for p in to_redis["ports"]) == [6379, 26379]
    assert any(p["port"] == 53 and p["protocol"] == "UDP" for e in egress for p in e["ports"])
    # Without HA, Redis still opens no connection.
    assert one(render(MATRIX["networkpolicy"]), "NetworkPolicy", "hipache-redis")["spec"]["egress"] == []


def test_redis_ha_valkey_flavor():
    objs = render(HA, ("redis.flavor=valkey",))
    spec = pod_spec(objs, "StatefulSet", "hipache-redis")
    init, (redis, sentinel) = spec["initContainers"][0], spec["containers"]
    assert re.fullmatch(r"docker\.io/valkey/valkey:\d+\.\d+\.\d+-alpine", sentinel["image"])
    assert sentinel["command"] == ["valkey-server", "/run/sentinel/sentinel.conf", "--sentinel"]
    assert "exec valkey-server /run/redis/redis.conf" in redis["command"][2]
    assert "valkey-cli -h" in init["command"][2] and "redis-cli" not in init["command"][2]
    assert sentinel["readinessProbe"]["exec"]["command"][2].startswith("valkey-cli ")
    assert {"REDISCLI_AUTH", "VALKEYCLI_AUTH"} <= set(env_of(sentinel))
    assert 'VALKEYCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 valkey-cli' in init["command"][2]
    # The same configuration and ACL users as Redis.
    assert one(objs, "ConfigMap", "hipache-redis")["data"] == one(render(HA), "ConfigMap", "hipache-redis")["data"]
    validate(objs)


def test_external_sentinel_url_and_password():
    sets = ("redis.mode=external", "redis.external.username=hipache", "redis.external.existingSecret=redis-credentials",
            "redis.external.url=rediss+sentinel://s1.example:26380\\,s2.example/mymaster/2?sentinel_username=watch",
            "redis.external.sentinel.existingSecret=sentinel-credentials")
    objs = render(None, sets)
    assert not find(objs, "StatefulSet") and not find(objs, "PodDisruptionBudget", "hipache-redis")
    for name, var, sentinel_pw in (("hipache", "HIPACHE_DRIVER", "HIPACHE_SENTINEL_PASSWORD"),
                                   ("hipache-syncer", "HIPACHE_SYNCER_REDIS_URL", "HIPACHE_SYNCER_SENTINEL_PASSWORD")):
        env = env_of(container(one(objs, "Deployment", name), name))
        assert env[var]["value"] == "rediss+sentinel://hipache:@s1.example:26380,s2.example/mymaster/2?sentinel_username=watch"
        assert env[sentinel_pw]["valueFrom"]["secretKeyRef"] == {"name": "sentinel-credentials",
                                                                 "key": "sentinel-password"}
    validate(objs)
    # Sentinels without a password: no variable; a plain URL never gets one.
    env = env_of(container(one(render(None, sets[:4]), "Deployment", "hipache"), "hipache"))
    assert "HIPACHE_SENTINEL_PASSWORD" not in env
    env = env_of(container(one(render(MATRIX["external-redis"], ("redis.external.sentinel.existingSecret=s",)),
                               "Deployment", "hipache"), "hipache"))
    assert "HIPACHE_SENTINEL_PASSWORD" not in env


def strip_generated(objs: list[dict]) -> list[dict]:
    return [o for o in objs if not is_generated(o)]


def test_redis_without_ha_is_unchanged():
    default = render(None)
    assert strip_generated(render(None, ("redis.ha.replicas=5", "redis.ha.masterName=other",
                                         "redis.ha.readFrom=master"))) == strip_generated(default)
    assert [p["metadata"]["name"] for p in find(default, "PodDisruptionBudget")] == ["hipache"]
    assert not find(default, "Service", "hipache-redis-headless")
    spec = pod_spec(default, "StatefulSet", "hipache-redis")
    assert [c["name"] for c in spec["containers"]] == ["redis"] and "initContainers" not in spec
    data = one(default, "ConfigMap", "hipache-redis")["data"]
    assert "sentinel.conf" not in data and "sentinel" not in data["users.acl"]
    for name in ("hipache", "hipache-syncer"):
        env = env_of(container(one(default, "Deployment", name), name))
        assert not [k for k in env if "SENTINEL" in k]
        assert "sentinel" not in json.dumps(env)
    assert sorted(one(default, "Secret", "hipache-redis")["data"]) == ["admin-password", "proxy-password",
                                                                      "syncer-password"]


def test_notes_tell_how_to_find_the_master():
    notes = install_notes("redis.ha.enabled=true")
    assert "-c sentinel -- \\\n       redis-cli -p 26379 --raw sentinel get-master-addr-by-name hipache" in notes
    assert 'exec --namespace hipache -it "$MASTER" -c redis' in notes
    assert "statefulset/hipache-redis" not in notes
    assert "get-master-addr-by-name" not in install_notes()
    # External Sentinels: redis-cli cannot take their URL.
    notes = install_notes("redis.mode=external", "redis.external.url=redis+sentinel://s1\\,s2/m",
                          "redis.external.proxy.username=p", "redis.external.syncer.username=s")
    assert "redis-cli -h <master> -p <port> --user <admin user>" in notes and "redis-cli -u" not in notes
    assert "create them on every server" in notes
