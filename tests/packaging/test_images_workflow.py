""".github/workflows/images.yml, the job that publishes the images (it
cannot run here: it is parsed and checked): both Dockerfile targets, both
platforms in one buildx build from the runner's platform, pushed, with the
OCI labels' build args, SBOM and provenance, and a keyless cosign signature
by digest; every action pinned to a release."""

from __future__ import annotations

import re

import yaml

from helpers import ROOT
from test_dockerfile import stages

WORKFLOW = ROOT / ".github/workflows/images.yml"
PLATFORMS = {"linux/amd64", "linux/arm64"}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def job() -> dict:
    jobs = workflow()["jobs"]
    assert len(jobs) == 1, list(jobs)
    return next(iter(jobs.values()))


def steps() -> list[dict]:
    return job()["steps"]


def step(uses: str) -> dict:
    found = [s for s in steps() if s.get("uses", "").split("@")[0] == uses]
    assert len(found) == 1, f"one {uses} step"
    return found[0]


def expand(value: str) -> str:
    """`${{ env.X }}` replaced by the job's env X."""
    env = job().get("env", {})
    return re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", lambda m: str(env[m.group(1)]), str(value))


def test_triggers_publish_on_main_and_tags():
    on = workflow().get("on", workflow().get(True))  # PyYAML reads `on` as true
    assert "v*" in on["push"]["tags"] and "main" in on["push"]["branches"]


def test_both_targets_both_platforms():
    targets = set(job()["strategy"]["matrix"]["target"])
    s = stages()
    assert targets == {"hipache", "hipache-syncer"} and targets <= set(s), targets
    build = step("docker/build-push-action")["with"]
    assert build["target"] == "${{ matrix.target }}"
    assert set(expand(build["platforms"]).split(",")) == PLATFORMS
    assert build["push"] is True
    assert not any(s.get("uses", "").startswith("docker/setup-qemu-action") for s in steps()), \
        "the Dockerfile cross-compiles from the build platform: no emulation"
    step("docker/setup-buildx-action")


def test_labels_sbom_and_provenance():
    build = step("docker/build-push-action")["with"]
    args = dict(line.split("=", 1) for line in build["build-args"].strip().splitlines())
    dockerfile_args = set(re.findall(r"^ARG (\w+)=", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(args) == {"VERSION", "REVISION", "CREATED"} <= dockerfile_args
    assert build["sbom"] is True
    assert str(build["provenance"]).startswith("mode=max")


def test_signed_keyless_by_digest():
    perms = job()["permissions"]
    assert perms["id-token"] == "write" and perms["packages"] == "write"
    step("sigstore/cosign-installer")
    runs = [s for s in steps() if "cosign sign" in s.get("run", "")]
    assert len(runs) == 1
    sign = runs[0]
    assert "--key" not in sign["run"], "keyless"
    assert "@${DIGEST}" in sign["run"] and sign["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}", \
        "sign the pushed digest, never a tag"
    assert step("docker/build-push-action").get("id") == "build"
    names = [s.get("uses", s.get("run", "")) for s in steps()]
    assert names.index(sign["run"]) > names.index(step("docker/build-push-action")["uses"])


def test_actions_are_pinned_to_releases():
    for s in steps():
        if "uses" in s:
            name, _, ref = s["uses"].partition("@")
            assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", ref), f"{name}@{ref}: pin a release tag or a commit"


def test_workflow_permissions_default_to_read():
    assert workflow()["permissions"] == {"contents": "read"}
