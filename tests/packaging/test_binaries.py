"""The chart against the real binaries: each container of the rendered
manifests is replayed locally (its args, its env with Kubernetes' `$(VAR)`
substitution, its ConfigMap and Secret volumes written under a temporary
root) and the binary must accept it: `hipache --dry` for the proxy; for the
syncer, which has no dry-run flag, the flags must parse and validate and
the process must fail only when it builds its Kubernetes client (from an
invalid kubeconfig)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import MATRIX, ROOT, bin_dir, find, render, run

CASES = list(MATRIX.items())
IDS = list(MATRIX)
FAKE_PASSWORD = "s3cretPassw0rd"


def resolve_env(c: dict) -> dict[str, str]:
    """The container's environment as the kubelet builds it (secrets and
    downward API faked), `$(VAR)` expanded from earlier entries."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: env.get(m.group(1), m.group(0)), e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = FAKE_PASSWORD
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = "fake-" + e["valueFrom"]["fieldRef"]["fieldPath"].split(".")[-1]
        else:
            raise AssertionError(f"unhandled env source {e}")
    return env


def self_signed(tmp: Path) -> tuple[bytes, bytes]:
    res = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "c.pem"), "-days", "2",
               "-subj", "/CN=existing.example.com", "-addext", "subjectAltName=DNS:existing.example.com"])
    assert res.returncode == 0, res.stderr
    return (tmp / "c.pem").read_bytes(), (tmp / "k.pem").read_bytes()


def materialize(objs: list[dict], workload: dict, c: dict, root: Path) -> dict[str, str]:
    """Writes the container's ConfigMap and Secret volumes under `root`;
    returns {mountPath: local path}."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    mounts = {}
    for m in c.get("volumeMounts", []):
        vol = volumes[m["name"]]
        local = root / m["mountPath"].lstrip("/")
        files: dict[str, bytes] = {}
        if "configMap" in vol:
            found = find(objs, "ConfigMap", vol["configMap"]["name"])
            assert found, f"ConfigMap {vol['configMap']['name']} is not rendered"
            files = {k: v.encode() for k, v in found[0]["data"].items()}
        elif "secret" in vol:
            found = find(objs, "Secret", vol["secret"]["secretName"])
            if found:
                files = {k: base64.b64decode(v) for k, v in found[0]["data"].items()}
            else:  # an existing Secret named by values: a stand-in of its type
                cert, key = self_signed(root)
                files = {"tls.crt": cert, "tls.key": key}
        else:
            raise AssertionError(f"unhandled volume {vol}")
        if "subPath" in m:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(files[m["subPath"]])
        else:
            local.mkdir(parents=True, exist_ok=True)
            for k, v in files.items():
                (local / k).write_bytes(v)
        mounts[m["mountPath"]] = str(local)
    return mounts


def relocate(text: str, mounts: dict[str, str]) -> str:
    for mount in sorted(mounts, key=len, reverse=True):
        text = text.replace(mount, mounts[mount])
    return text


def proxy_parts(objs):
    workload = [o for o in objs if o["kind"] in ("Deployment", "DaemonSet") and o["metadata"]["name"] == "hipache"]
    assert len(workload) == 1
    w = workload[0]
    c = next(c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == "hipache")
    return w, c


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_rendered_proxy_config_is_accepted_by_hipache_dry(name, values, tmp_path):
    objs = render(values)
    w, c = proxy_parts(objs)
    mounts = materialize(objs, w, c, tmp_path)
    # Paths in the config file point into the volumes: relocate them.
    for mount, local in mounts.items():
        p = Path(local)
        if p.is_file():
            p.write_text(relocate(p.read_text(), mounts))
    args = [relocate(a, mounts) for a in c.get("args", [])]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **resolve_env(c)}
    res = run([str(bin_dir() / "hipache"), "--dry", *args], env=env, cwd=tmp_path, timeout=30)
    assert res.returncode == 0, f"hipache --dry refused the chart's config ({name}):\n{res.stderr}"
    effective = json.loads(res.stdout)
    server = effective["server"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert server["workers"] == 0
    assert server["adminAddress"] == f"0.0.0.0:{ports['admin']}"
    assert {b["port"] for b in effective["http"]["bind"]} == {ports["http"]}
    if "https" in ports:
        assert {b["port"] for b in effective["https"]["bind"]} == {ports["https"]}
    else:
        assert not effective.get("https")
    grace = w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert server["drainTimeout"] < grace
    # The driver is the Redis the chart points at, its password censored.
    driver = json.dumps(effective["driver"])
    assert FAKE_PASSWORD not in res.stdout + res.stderr
    env_driver = env["HIPACHE_DRIVER"]
    host = re.match(r"^rediss?(?:\+sentinel)?://(?:[^@]*@)?([^:/,]+)", env_driver).group(1)
    assert host in driver
    if "REDIS_PASSWORD" in env:
        assert "***" in driver


def test_image_default_config_is_accepted(tmp_path):
    res = run([str(bin_dir() / "hipache"), "--dry", "-c", str(ROOT / "packaging/docker/config.json")],
              cwd=tmp_path, timeout=30)
    assert res.returncode == 0, res.stderr
    effective = json.loads(res.stdout)
    assert effective["server"]["adminAddress"] == "0.0.0.0:10264"
    assert effective["http"]["bind"][0]["port"] == 8080


def test_hipache_dry_is_a_real_check(tmp_path):
    """The check above can fail: a config the proxy refuses is caught."""
    bad = tmp_path / "config.yaml"
    bad.write_text("server:\n  workers: 0\n  tcpTimout: 30\nhttp:\n  port: 8080\n")
    res = run([str(bin_dir() / "hipache"), "--dry", "-c", str(bad)], timeout=30)
    assert res.returncode != 0 and "tcpTimout" in res.stderr


def syncer_help() -> str:
    res = run([str(bin_dir() / "hipache-syncer"), "--help"], timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def run_syncer(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text("this is: [not a kubeconfig\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "KUBECONFIG": str(kubeconfig),
           "HOME": str(tmp)}
    return run([str(bin_dir() / "hipache-syncer"), *args], env=env, cwd=tmp, timeout=30)


SYNCER_CASES = [(n, v) for n, v in CASES if n != "minimal"]


@pytest.mark.parametrize("name,values", SYNCER_CASES, ids=[n for n, _ in SYNCER_CASES])
def test_rendered_syncer_flags_parse(name, values, tmp_path):
    objs = render(values)
    d = find(objs, "Deployment", "hipache-syncer")
    assert len(d) == 1
    c = next(c for c in d[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "hipache-syncer")
    help_text = syncer_help()
    for a in c["args"]:
        flag = a.split("=", 1)[0]
        assert flag.startswith("--") and re.search(rf"\s{re.escape(flag)}\b", help_text), f"{flag} is not a flag of hipache-syncer"
    env = resolve_env(c)
    for var in env:
        if var.startswith("HIPACHE_SYNCER_"):
            flag = "--" + var.removeprefix("HIPACHE_SYNCER_").lower().replace("_", "-")
            # Secrets are listed without their value: `[env: VAR]`.
            assert re.search(rf"\[env: {re.escape(var)}[=\]]", help_text), f"{var} is not read by hipache-syncer"
    admin = next(p["containerPort"] for p in c["ports"] if p["name"] == "admin")
    assert f"--admin-address=0.0.0.0:{admin}" in c["args"]
    res = run_syncer([*c["args"], "--check-config"], env, tmp_path)
    # Flags and variables are parsed and validated; nothing is contacted.
    assert res.returncode == 0, f"hipache-syncer rejected the chart's flags ({name}):\n{res.stderr[-3000:]}"
    assert "configuration is valid" in res.stdout


def test_syncer_flag_check_is_a_real_check(tmp_path):
    """--check-config rejects bad flags: the check above would catch them."""
    res = run_syncer(["--check-config", "--no-leader-election", "--health-path=nope"], {}, tmp_path)
    assert res.returncode != 0 and "--health-path" in res.stderr
    res = run_syncer(["--check-config", "--no-such-flag"], {}, tmp_path)
    assert res.returncode != 0
    res = run_syncer(["--check-config"], {"HIPACHE_SYNCER_REDIS_URL": "http://wrong"}, tmp_path)
    assert res.returncode != 0 and "--redis-url" in res.stderr


@pytest.mark.parametrize("name,values", CASES, ids=IDS)
def test_proxy_args_and_env_are_known_to_hipache(name, values):
    _, c = proxy_parts(render(values))
    res = run([str(bin_dir() / "hipache"), "--help"], timeout=30)
    assert res.returncode == 0
    for a in c["args"]:
        flag = a.split("=", 1)[0]
        assert re.search(rf"\s{re.escape(flag)}\b", res.stdout), f"{flag} is not a flag of hipache"
    for var in resolve_env(c):
        if var.startswith("HIPACHE_"):
            assert re.search(rf"\[env: {re.escape(var)}[=\]]", res.stdout), f"{var} is not read by hipache"
