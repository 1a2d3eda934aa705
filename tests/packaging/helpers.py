"""Shared helpers of the packaging tests: tools, rendering the chart, the
values matrix, and regenerating the derived files (deploy/, the chart
README's value table, the chart's copy of the dashboard)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

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
def render_text(values_file: str | None, sets: tuple[str, ...] = ()) -> str:
    res = run([tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
              + helm_args(values_file, sets))
    if res.returncode != 0:
        raise AssertionError(f"helm template failed:\n{res.stderr}")
    return res.stdout


@functools.lru_cache(maxsize=None)
def _render(values_file: str | None, sets: tuple[str, ...] = ()) -> tuple:
    return tuple(d for d in yaml.safe_load_all(render_text(values_file, sets)) if d)


def render(values_file: str | None, sets: tuple[str, ...] = ()) -> list[dict]:
    """The rendered objects (deep copies: tests may change them)."""
    return json.loads(json.dumps(list(_render(values_file, sets))))


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_generated(obj: dict) -> bool:
    return (obj.get("metadata", {}).get("annotations") or {}).get(GENERATED_ANNOTATION) == "true"


# --- deploy/ -----------------------------------------------------------------

DEPLOY_HEADER = """\
# Generated from charts/hipache with its default values by
# `scripts/check-packaging --update` (release "hipache", namespace "hipache").
# Do not edit: change the chart, then regenerate; CI fails when this file
# and a fresh render differ. Left out (random at each render): the generated
# Secret of the Redis users' passwords; create it first (README.md, "With
# kubectl").
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
