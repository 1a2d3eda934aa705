"""The Helm chart: lint, render across the values matrix, offline validation
of every object against the Kubernetes JSON schemas, the CRD objects, and
what each value must change in the rendered objects."""

from __future__ import annotations

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
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}}}},
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
            "HipacheSyncerFailing", "HipacheDeadBackends"} <= alerts
    exported = exported_metric_names()
    assert len(exported) > 20, "metric name lists not found"
    for r in rules:
        used = set(re.findall(r"\bhipache_[a-z0-9_]+", r["expr"]))
        assert used, r["alert"]
        assert used <= exported, f"{r['alert']} uses metrics nobody exports: {used - exported}"
    ratio = next(r for r in rules if r["alert"] == "HipacheHigh5xxRatio")
    assert "> 0.02" in ratio["expr"], "errorRatioThreshold not applied"


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
