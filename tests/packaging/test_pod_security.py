"""Pod Security Admission: deploy/namespace.yaml enforces `restricted`, and
every pod of deploy/ (and of the chart's defaults) meets it, so the label
is true rather than hopeful. No API server here: the checks below are the
Pod Security Standards' `baseline` and `restricted` controls
(kubernetes.io/docs/concepts/security/pod-security-standards/), as of
Kubernetes 1.33, applied to the pod templates."""

from __future__ import annotations

import pytest
import yaml

from helpers import DEPLOY, MATRIX, render, run, tool

LEVELS = ("privileged", "baseline", "restricted")

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def pod_specs(objs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(name, pod metadata, pod spec) of every pod or pod template."""
    out = []
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Pod":
            out.append((name, o["metadata"], o["spec"]))
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            t = o["spec"]["template"]
            out.append((name, t.get("metadata") or {}, t["spec"]))
        elif o["kind"] == "CronJob":
            t = o["spec"]["jobTemplate"]["spec"]["template"]
            out.append((name, t.get("metadata") or {}, t["spec"]))
    return out


def violations(meta: dict, spec: dict, level: str) -> list[str]:
    """What keeps the pod from `level` (empty: it meets it)."""
    if level == "privileged":
        return []
    bad = []
    psc = spec.get("securityContext") or {}
    containers = [c for key in ("initContainers", "containers", "ephemeralContainers")
                  for c in spec.get(key) or []]
    # baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            bad.append(key)
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("hostProcess")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            bad.append(f"hostPath volume {v['name']}")
    for s in psc.get("sysctls") or []:
        if s["name"] not in SAFE_SYSCTLS:
            bad.append(f"sysctl {s['name']}")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value == "unconfined":
            bad.append(key)
    for ctx, where in [(psc, "pod")] + [(c.get("securityContext") or {}, c["name"]) for c in containers]:
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{where}: AppArmor Unconfined")
        se = ctx.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            bad.append(f"{where}: seLinuxOptions {se}")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{where}: seccomp Unconfined")
    for c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{c['name']}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{c['name']}: hostProcess")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{c['name']}: procMount")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            bad.append(f"{c['name']}: adds {sorted(added - BASELINE_CAPABILITIES)}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f"{c['name']}: hostPort {p['hostPort']}")
    if level == "baseline":
        return bad
    # restricted
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {sorted(kinds - RESTRICTED_VOLUMES)}")
    if psc.get("runAsUser") == 0:
        bad.append("pod: runAsUser 0")
    for c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{c['name']}: allowPrivilegeEscalation not false")
        if sc.get("runAsNonRoot") is False or not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            bad.append(f"{c['name']}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{c['name']}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{c['name']}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{c['name']}: adds {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}")
    return bad


def deploy_objects() -> list[dict]:
    res = run([tool("kubectl"), "kustomize", str(DEPLOY)])
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def namespace_labels() -> dict:
    ns = yaml.safe_load((DEPLOY / "namespace.yaml").read_text())
    return ns["metadata"]["labels"]


def test_namespace_enforces_audits_and_warns():
    labels = namespace_labels()
    for mode in ("enforce", "audit", "warn"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") in LEVELS, mode
        assert f"pod-security.kubernetes.io/{mode}-version" in labels, mode
    # Audit and warn are never looser than what is enforced.
    enforced = LEVELS.index(labels["pod-security.kubernetes.io/enforce"])
    for mode in ("audit", "warn"):
        assert LEVELS.index(labels[f"pod-security.kubernetes.io/{mode}"]) >= enforced


def test_deploy_pods_meet_the_enforced_level():
    level = namespace_labels()["pod-security.kubernetes.io/enforce"]
    pods = pod_specs(deploy_objects())
    assert {n.split("/")[0] for n, _, _ in pods} >= {"Deployment", "StatefulSet"}
    for name, meta, spec in pods:
        assert not violations(meta, spec, level), (name, violations(meta, spec, level))


def test_the_level_is_the_strictest_that_holds():
    """`restricted` is the strictest level: if the label says less, some pod
    must need it."""
    level = namespace_labels()["pod-security.kubernetes.io/enforce"]
    if level != "restricted":
        stricter = LEVELS[LEVELS.index(level) + 1]
        assert any(violations(m, s, stricter) for _, m, s in pod_specs(deploy_objects())), \
            f"every pod meets {stricter}: label the namespace {stricter}"


@pytest.mark.parametrize("name", [n for n in MATRIX if n != "daemonset"])
def test_chart_pods_meet_restricted(name):
    for pod, meta, spec in pod_specs(render(MATRIX[name])):
        assert not violations(meta, spec, "restricted"), (pod, violations(meta, spec, "restricted"))


def test_host_ports_are_not_even_baseline():
    """With `proxy.hostPorts.enabled` (the daemonset case) the proxy pods
    need a `privileged` namespace, as namespace.yaml says."""
    pods = pod_specs(render(MATRIX["daemonset"]))
    proxy = [(m, s) for n, m, s in pods if n.startswith("DaemonSet/")]
    assert proxy and all(any("hostPort" in v for v in violations(m, s, "baseline")) for m, s in proxy)


def test_the_check_is_a_real_check():
    objs = deploy_objects()
    _, meta, spec = next(p for p in pod_specs(objs) if p[0].startswith("Deployment/"))
    assert not violations(meta, spec, "restricted")
    c = spec["containers"][0]
    c["securityContext"]["allowPrivilegeEscalation"] = True
    assert violations(meta, spec, "restricted") and not violations(meta, spec, "baseline")
    c["securityContext"]["privileged"] = True
    assert violations(meta, spec, "baseline")
    del c["securityContext"]["privileged"]
    c["securityContext"]["allowPrivilegeEscalation"] = False
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert violations(meta, spec, "baseline")
