"""Outside Kubernetes: the systemd units (systemd-analyze verify, the
sandboxing the issue asks for, reload reopening the access log) and the
logrotate snippet (parsed by logrotate itself)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from helpers import ROOT, bin_dir, run, tool

UNITS = ROOT / "packaging/systemd"


def unit(name: str) -> dict[str, list[str]]:
    """Directives of the [Service] section (repeated ones kept in order)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        k, v = line.split("=", 1)
        out.setdefault(f"{section}{k}", []).append(v)
    return out


@pytest.mark.parametrize("name", ["hipache.service", "hipache-syncer.service"])
def test_systemd_analyze_verify(name, tmp_path):
    """Verified with ExecStart pointing at the binaries just built (the
    installed path does not exist here)."""
    binary = name.removesuffix(".service")
    text = (UNITS / name).read_text()
    assert f"ExecStart=/usr/local/bin/{binary} " in text
    text = text.replace(f"/usr/local/bin/{binary} ", f"{bin_dir().resolve() / binary} ")
    (tmp_path / name).write_text(text)
    res = run([tool("systemd-analyze"), "verify", str(tmp_path / name)])
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_systemd_verify_is_a_real_check(tmp_path):
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=relative/path\nProtectSystem=sometimes\n")
    res = run([tool("systemd-analyze"), "verify", str(bad)])
    assert res.returncode != 0 or res.stderr.strip()


COMMON = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    "User": "hipache", "Group": "hipache",
}


def test_proxy_unit_sandbox_and_reload():
    u = unit("hipache.service")
    for k, v in COMMON.items():
        assert u[f"[Service]{k}"] == [v], k
    assert u["[Service]CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert u["[Service]AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert u["[Service]ExecReload"] == ["/bin/kill -USR1 $MAINPID"]
    assert u["[Service]ExecStart"] == ["/usr/local/bin/hipache --config /etc/hipache/config.json"]
    assert u["[Service]LogsDirectory"] == ["hipache"]
    # Stop timeout covers the default drain (30 s).
    assert int(u["[Service]TimeoutStopSec"][0]) > 30
    assert u["[Install]WantedBy"] == ["multi-user.target"]


def test_syncer_unit_sandbox():
    u = unit("hipache-syncer.service")
    for k, v in COMMON.items():
        assert u[f"[Service]{k}"] == [v], k
    assert u["[Service]CapabilityBoundingSet"] == [""], "the syncer needs no capability"
    assert any(v.startswith("kubeconfig:") for v in u["[Service]LoadCredential"])
    assert "KUBECONFIG=%d/kubeconfig" in u["[Service]Environment"]


def test_units_only_use_real_flags():
    for name in ("hipache", "hipache-syncer"):
        help_text = run([str(bin_dir() / name), "--help"]).stdout
        exec_start = unit(f"{name}.service")["[Service]ExecStart"][0]
        for flag in re.findall(r"\s(--[a-z-]+)", exec_start):
            assert re.search(rf"\s{flag}\b", help_text), f"{name}: {flag}"


def test_sysusers_creates_the_service_user():
    text = (UNITS / "hipache.sysusers.conf").read_text()
    assert re.search(r"^u hipache ", text, re.M)


def test_logrotate_snippet(tmp_path):
    text = (ROOT / "packaging/logrotate/hipache").read_text()
    assert "/var/log/hipache/*.log" in text
    assert "systemctl reload hipache.service" in text, "rotation reopens the log through ExecReload (SIGUSR1)"
    assert re.search(r"^\s*su hipache hipache$", text, re.M)
    # Parsed by logrotate itself (debug mode: nothing is rotated), on a copy
    # whose paths and user exist here.
    logs = tmp_path / "log"
    logs.mkdir(mode=0o755)
    (logs / "access.log").write_text("x\n")
    copy = text.replace("/var/log/hipache", str(logs)).replace("su hipache hipache", "su root root")
    conf = tmp_path / "hipache"
    conf.write_text(copy)
    res = run([tool("logrotate"), "-d", "-s", str(tmp_path / "state"), str(conf)])
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "error" not in out.lower(), out
    assert "rotating pattern" in out


def test_readme_documents_cargo_install():
    readme = (ROOT / "README.md").read_text()
    for crate in ("proxy", "syncer"):
        assert re.search(rf"cargo install (--locked )?--path {crate}\b", readme), crate
    assert "npm install -g hipache" in readme
