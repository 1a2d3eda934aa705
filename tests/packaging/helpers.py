"""Shared helpers of the packaging tests: tools, rendering the chart, the
values matrix, processes started by the tests (process groups, free ports,
polling, the `processes` fixture), and regenerating the derived files
(deploy/, the chart README's value table, the chart's copy of the
dashboard)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hipache"
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "hipache-dashboard.json"
CHART_DASHBOARD = CHART / "dashboards" / "hipache-dashboard.json"
RELEASE = "hipache"
NAMESPACE = "hipache"
# The Kubernetes versions every rendered object is validated against: the
# one the syncer is built for (k8s-openapi feature v1_33) and the newest
# kubernetes-validate ships.
KUBE_VERSIONS = ["1.33.0", "latest"]

# name -> values file under charts/hipache/ci/ (None: the defaults).
MATRIX: dict[str, str | None] = {
    "defaults": None,
    "daemonset": "daemonset-values.yaml",
    "external-redis": "external-redis-values.yaml",
    "ha-syncer": "ha-syncer-values.yaml",
    "monitoring": "monitoring-values.yaml",
    "tls": "tls-values.yaml",
    "networkpolicy": "networkpolicy-values.yaml",
    "autoscaling": "autoscaling-values.yaml",
    "namespaced-syncer": "namespaced-syncer-values.yaml",
    "minimal": "minimal-values.yaml",
    "redis-users": "redis-users-values.yaml",
    "redis-ha": "redis-ha-values.yaml",
    "gitops": "gitops-values.yaml",
    "openshift": "openshift-values.yaml",
}

# Objects whose content is random at each render (generated passwords and
# certificates): left out of deploy/ and of the drift comparison.
GENERATED_ANNOTATION = "hipache.io/generated"


def tools_bin() -> Path:
    return Path(os.environ.get("HIPACHE_TOOLS_BIN", Path.home() / ".cache/hipache-tools/bin"))


def tool(name: str) -> str:
    """Path of a tool installed by scripts/check-packaging; a missing tool is
    an error, never a skip."""
    path = tools_bin() / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"{name} not found in {tools_bin()} nor PATH: run scripts/check-packaging")


def bin_dir() -> Path:
    """Directory of the hipache and hipache-syncer binaries (built by
    scripts/check-packaging through scripts/build-release)."""
    d = os.environ.get("HIPACHE_BIN_DIR")
    if not d:
        raise RuntimeError("HIPACHE_BIN_DIR is not set: run the tests through scripts/check-packaging")
    return (ROOT / d).resolve()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, **kw)


def helm_args(values_file: str | None, sets: tuple[str, ...] = ()) -> list[str]:
    args = []
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.lru_cache(maxsize=None)
def render_text(values_file: str | None, sets: tuple[str, ...] = (), release: str = RELEASE,
                namespace: str = NAMESPACE) -> str:
    res = run([tool("helm"), "template", release, str(CHART), "--namespace", namespace]
              + helm_args(values_file, sets))
    if res.returncode != 0:
        raise AssertionError(f"helm template failed:\n{res.stderr}")
    return res.stdout


@functools.lru_cache(maxsize=None)
def _render(values_file: str | None, sets: tuple[str, ...] = (), release: str = RELEASE,
            namespace: str = NAMESPACE) -> tuple:
    return tuple(d for d in yaml.safe_load_all(render_text(values_file, sets, release, namespace)) if d)


def render(values_file: str | None, sets: tuple[str, ...] = (), release: str = RELEASE,
           namespace: str = NAMESPACE) -> list[dict]:
    """The rendered objects (deep copies: tests may change them), of
    release `release` in `namespace`."""
    return json.loads(json.dumps(list(_render(values_file, sets, release, namespace))))


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_generated(obj: dict) -> bool:
    return (obj.get("metadata", {}).get("annotations") or {}).get(GENERATED_ANNOTATION) == "true"


# --- processes started by the tests -------------------------------------------

# Longest life, in seconds, of anything `spawn` starts, should the fixture
# that started it not stop it.
PROCESS_TIMEOUT = "180"
# How long `until` waits by default, in seconds.
DEADLINE = 15.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log: Path, **kw) -> subprocess.Popen:
    """Starts `args` under `timeout` in a process group of its own, output
    to `log`: it stops by itself after PROCESS_TIMEOUT, and `stop` kills it
    with its children (killing the `timeout` wrapper alone would leave
    them running). `kw` goes to Popen (env, cwd)."""
    with log.open("wb") as out:
        return subprocess.Popen(["timeout", "-k", "5", PROCESS_TIMEOUT, *args], start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT, **kw)


def group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid` (from /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[2]) == pgid:
            pids.append(int(d.name))
    return pids


def stop(proc: subprocess.Popen) -> None:
    """Kills the process group `spawn` started, and reaps it: the command
    (and anything else in the group) first, so that `timeout` reaps it and
    exits, then whatever is left of the group. (Killing the whole group at
    once leaves the command a zombie until init reaps it.)"""
    if proc.poll() is None:
        for pid in group_members(proc.pid):
            if pid != proc.pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture
def processes():
    """Processes started by a test (`spawn`): the test appends them, they
    are stopped at its end, whatever happened. Visible to every packaging
    test through conftest.py."""
    procs: list[subprocess.Popen] = []
    yield procs
    errors = []
    for proc in procs:
        try:
            stop(proc)
        except Exception as e:  # stop the others all the same
            errors.append(e)
    if errors:
        raise errors[0]


def log_tails(logs, chars: int = 3000) -> str:
    """The end of each log that exists, under its name: for failure
    messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs if p.exists())


def until(what: str, fn, deadline: float = DEADLINE, logs=(), procs=()):
    """Calls `fn` every 50 ms until it returns something true, and returns
    that. OSError and AssertionError count as not yet. After `deadline`
    seconds, or as soon as one of `procs` (processes that must keep
    running) has exited, fails with the last result and the tails of
    `logs`."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except (OSError, AssertionError) as e:
            last = e
        exited = [p for p in procs if p.poll() is not None]
        if exited:
            raise AssertionError(f"exited (status {exited[0].returncode}) while waiting for {what} "
                                 f"(last: {last!r})\n{log_tails(logs)}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{log_tails(logs)}")


# --- deploy/ -----------------------------------------------------------------

DEPLOY_HEADER = """\
# Generated from charts/hipache with its default values by
# `scripts/check-packaging --update` (release "hipache", namespace "hipache").
# Do not edit: change the chart, then regenerate; CI fails when this file
# and a fresh render differ. Left out (random at each render): the generated
# Secrets of the Redis users' passwords (hipache-redis) and of the default
# TLS certificate (hipache-default-tls, type kubernetes.io/tls); create them
# first (README.md, "With kubectl").
"""


def deploy_manifest() -> str:
    """deploy/hipache.yaml as a fresh render of the defaults makes it."""
    docs = render_text(None).split("\n---\n")
    kept = []
    for doc in docs:
        obj = yaml.safe_load(doc)
        if not obj or is_generated(obj):
            continue
        kept.append(doc.strip("\n").removeprefix("---").strip("\n"))
    return DEPLOY_HEADER + "".join(f"---\n{d}\n" for d in kept)


# --- the chart README's table of values ---------------------------------------

def values_doc() -> list[tuple[str, str, str]]:
    """(key, default, description) of every documented value of values.yaml,
    from its `# --` comments (helm-docs style)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and comment:
            comment.append(stripped[1:].strip())
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if not m:
            if not stripped.startswith("-"):
                comment = []
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if comment:
            path = [k for _, k in stack]
            default = values
            for k in path:
                default = default[k]
            out.append((".".join(path), json.dumps(default), " ".join(comment)))
            comment = []
    return out


def leaf_paths(value, prefix="") -> list[str]:
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out += leaf_paths(v, f"{prefix}.{k}" if prefix else k)
        return out
    return [prefix]


README_BEGIN = "<!-- values:begin (generated by scripts/check-packaging --update) -->"
README_END = "<!-- values:end -->"


def values_table() -> str:
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for key, default, desc in values_doc():
        default = default.replace("|", "\\|")
        desc = desc.replace("|", "\\|")
        rows.append(f"| `{key}` | `{default}` | {desc} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    start, end = text.index(README_BEGIN), text.index(README_END)
    return text[: start + len(README_BEGIN)] + "\n" + values_table() + "\n" + text[end:]


def update_generated() -> None:
    """Rewrites every derived file: deploy/hipache.yaml, the chart's copy of
    the dashboard, the chart README's table."""
    if DASHBOARD.exists():
        CHART_DASHBOARD.parent.mkdir(exist_ok=True)
        shutil.copyfile(DASHBOARD, CHART_DASHBOARD)
    (DEPLOY / "hipache.yaml").write_text(deploy_manifest())
    readme = CHART / "README.md"
    readme.write_text(readme_with_table(readme.read_text()))


if __name__ == "__main__":
    update_generated()
    print("updated deploy/hipache.yaml, charts/hipache/README.md, charts/hipache/dashboards/")
