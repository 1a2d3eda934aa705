"""The Dockerfile (no Docker engine here: it is checked, not built): its
stages and final images, base images pinned by digest, the cross-build
from the build platform, hadolint, .dockerignore, and that it builds
through scripts/build-release, the same command CI builds the tested
binaries with (checked with a stand-in cargo that records its arguments)."""

from __future__ import annotations

import os
import re
import shlex
import tomllib

from dockerfile_parse import DockerfileParser

from helpers import ROOT, run, tool

OCI_LABELS = ["title", "description", "source", "licenses", "version", "revision", "created"]
DISTROLESS = "gcr.io/distroless/static-debian12:nonroot"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
MUSL_TARGETS = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
FROM = re.compile(r"^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$", re.I)


def parser() -> DockerfileParser:
    p = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return p


def stages() -> dict[str, list[dict]]:
    """Instructions per stage name."""
    out: dict[str, list[dict]] = {}
    current = None
    for ins in parser().structure:
        if ins["instruction"] == "FROM":
            m = FROM.match(ins["value"])
            current = m.group(3) or m.group(2)
            out[current] = []
        if current:
            out[current].append(ins)
    return out


def base(stage: list[dict]) -> tuple[str | None, str]:
    """(--platform, image) of a stage's FROM."""
    m = FROM.match(stage[0]["value"])
    return m.group(1), m.group(2)


def shipped_binaries() -> set[str]:
    names = set()
    for crate in ("proxy", "syncer"):
        manifest = tomllib.loads((ROOT / crate / "Cargo.toml").read_text())
        names |= {b["name"] for b in manifest.get("bin", [])}
    return names


def test_stages_and_targets():
    s = stages()
    assert list(s) == ["chef", "planner", "builder", "hipache-syncer", "hipache"], list(s)
    assert set(s) >= shipped_binaries(), "one target per binary"
    assert base(s["chef"])[1].startswith("docker.io/library/rust:")


def test_final_images_are_minimal_non_root_and_labelled():
    s = stages()
    for name in ("hipache", "hipache-syncer"):
        ins = s[name]
        platform, image = base(ins)
        assert image.startswith(DISTROLESS + "@"), image
        assert platform is None, "the final images are of the target platform"
        users = [i["value"] for i in ins if i["instruction"] == "USER"]
        assert users and users[-1] == "65532:65532", "non-root numeric user (runAsNonRoot can check it)"
        entry = [i["value"] for i in ins if i["instruction"] == "ENTRYPOINT"]
        assert entry == [f'["/usr/local/bin/{name}"]'], entry
        copies = [i["value"] for i in ins if i["instruction"] == "COPY"]
        assert f"--from=builder /out/{name} /usr/local/bin/{name}" in copies
        assert not [i for i in ins if i["instruction"] == "RUN"], "nothing runs in the final image (no shell)"
        labels = " ".join(i["value"] for i in ins if i["instruction"] == "LABEL")
        for label in OCI_LABELS:
            assert f"org.opencontainers.image.{label}=" in labels, f"{name}: {label}"
    # The default target (the last stage) is the proxy.
    assert list(s)[-1] == "hipache"


def test_builder_uses_the_shared_build_command_and_a_dependency_layer():
    s = stages()
    runs = [i["value"] for name in ("chef", "planner", "builder") for i in s[name] if i["instruction"] == "RUN"]
    text = "\n".join(runs)
    assert "cargo build" not in text and "cargo chef cook" not in text, \
        "the Dockerfile must build through scripts/build-release only"
    builder = [i for i in s["builder"] if i["instruction"] in ("RUN", "COPY")]
    kinds = [(i["instruction"], i["value"]) for i in builder]
    deps = next(n for n, (k, v) in enumerate(kinds) if k == "RUN" and "scripts/build-release --deps-only" in v)
    copy_all = next(n for n, (k, v) in enumerate(kinds) if k == "COPY" and v == ". .")
    final = next(n for n, (k, v) in enumerate(kinds) if k == "RUN" and re.search(r"scripts/build-release\)", v))
    assert deps < copy_all < final, "dependencies are built before the sources are copied (cached layer)"
    # Only the recipe and the build script before the dependency layer.
    for k, v in kinds[:deps]:
        assert k == "COPY" and ("recipe.json" in v or "scripts/build-release" in v), v
    for b in shipped_binaries():
        assert f"/{b}" in kinds[final][1]


def test_build_script_is_what_ci_builds_with():
    script = (ROOT / "scripts/build-release").read_text()
    flags = re.search(r"^flags=\((.*)\)$", script, re.M)
    assert flags, "scripts/build-release keeps its cargo flags in one array"
    words = shlex.split(flags.group(1))
    packages = {words[i + 1] for i, w in enumerate(words) if w == "-p"}
    assert packages == {"hipache", "hipache-syncer"}
    assert "--locked" in words
    code = [l for l in script.splitlines() if not l.lstrip().startswith("#")]
    builds = [l for l in code if re.search(r"\bcargo \"\$build\"", l)]
    cooks = [l for l in code if "cargo chef cook" in l]
    assert len(builds) == 1 and len(cooks) == 1, "one cargo command of each kind"
    assert '"${flags[@]}"' in builds[0] and '"${flags[@]}"' in cooks[0], "both with the same flags"
    check = (ROOT / "scripts/check-packaging").read_text()
    assert "scripts/build-release" in check, "CI builds the binaries it tests with the same script"


def test_toolchain_is_new_enough():
    tag = re.match(r"docker\.io/library/rust:(\d+)\.(\d+)", base(stages()["chef"])[1])
    image = (int(tag.group(1)), int(tag.group(2)))
    needed = []
    for manifest in ("Cargo.toml", "proxy/Cargo.toml", "syncer/Cargo.toml"):
        text = (ROOT / manifest).read_text()
        needed += [tuple(map(int, m)) for m in re.findall(r'^rust-version\s*=\s*"(\d+)\.(\d+)', text, re.M)]
    assert needed and image >= max(needed), f"rust {image} < {max(needed)}"


def test_no_secrets_baked_in():
    p = parser()
    for ins in p.structure:
        if ins["instruction"] in ("ARG", "ENV"):
            name = re.split(r"[=\s]", ins["value"], maxsplit=1)[0]
            assert not re.search(r"pass|secret|token|key|cred", name, re.I), ins["value"]
        if ins["instruction"] == "RUN":
            assert "--mount=type=secret" not in ins["value"]
            assert not re.search(r"https?://[^ ]*@", ins["value"])
        if ins["instruction"] in ("COPY", "ADD"):
            assert not re.search(r"\.(pem|key|env)\b|kubeconfig|id_rsa", ins["value"]), ins["value"]


def test_dockerignore_keeps_the_context_small_and_complete():
    lines = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*", "start from nothing, re-include what the build needs"
    included = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    for member in workspace:
        assert member in included or f"{member}/Cargo.toml" in included, member
    for needed in ("Cargo.toml", "Cargo.lock", "scripts/build-release", "packaging/docker"):
        assert needed in included, needed
    # Every COPY source from the context is re-included.
    for ins in parser().structure:
        if ins["instruction"] == "COPY" and not ins["value"].startswith("--from"):
            src = ins["value"].split()[0]
            if src != ".":
                assert any(src == i or src.startswith(i + "/") for i in included), src
    assert "**/target/" in lines


def test_hadolint():
    res = run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_is_a_real_check(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && apt-get install curl\n")
    res = run([tool("hadolint"), "--no-color", str(bad)])
    assert res.returncode != 0


def test_base_images_are_pinned_by_digest():
    s = stages()
    for name, ins in s.items():
        _, image = base(ins)
        if image in s:
            continue  # a stage of this file
        assert DIGEST.search(image), f"{name}: {image} is not pinned by digest"
        assert ":" in image.split("@")[0], f"{name}: keep the tag beside the digest, to say what it was"
    text = (ROOT / "Dockerfile").read_text()
    assert "imagetools inspect" in text or "crane digest" in text, "say how to refresh the digests"


def test_rust_stages_run_on_the_build_platform_and_cross_compile():
    s = stages()
    assert base(s["chef"])[0] == "$BUILDPLATFORM"
    for name in ("planner", "builder"):
        assert base(s[name])[1] == "chef", f"{name} builds on the chef stage, so on the build platform"
    chef = " ".join(i["value"] for i in s["chef"] if i["instruction"] == "RUN")
    assert "rustup target add" in chef
    for target in MUSL_TARGETS.values():
        assert target in chef, f"{target} installed"
    assert "ziglang==" in chef and "cargo-zigbuild==" in chef, "zig and cargo-zigbuild, pinned"
    builder = [i for i in s["builder"] if i["instruction"] in ("ARG", "RUN")]
    args = {i["value"] for i in builder if i["instruction"] == "ARG"}
    assert {"TARGETARCH", "BUILDARCH"} <= args
    runs = [i["value"] for i in builder if i["instruction"] == "RUN"]
    for arch, target in MUSL_TARGETS.items():
        assert any(f"{arch}) echo {target}" in r for r in runs), f"TARGETARCH {arch} builds {target}"
    builds = [r for r in runs if "scripts/build-release" in r]
    assert len(builds) == 2 and all("HIPACHE_ZIGBUILD=1" in r and "CARGO_BUILD_TARGET=" in r for r in builds)
    # A cross-built binary cannot run in the builder: only a native one is tried.
    final = builds[-1]
    assert re.search(r'if \[ "\$\{TARGETARCH[^"]*\}" = "\$\{BUILDARCH[^"]*\}" \]; then.*--version', final, re.S)


def fake_cargo(tmp_path):
    """A `cargo` that records its arguments, and the environment to run
    scripts/build-release with it."""
    log = tmp_path / "cargo.log"
    cargo = tmp_path / "bin" / "cargo"
    cargo.parent.mkdir()
    cargo.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    cargo.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "HIPACHE_PROFILE", "HIPACHE_ZIGBUILD")}
    env["PATH"] = f"{cargo.parent}:{env['PATH']}"
    return log, env


def test_build_script_commands(tmp_path):
    log, env = fake_cargo(tmp_path)
    script = str(ROOT / "scripts/build-release")
    common = "--locked --profile release -p hipache -p hipache-syncer"
    cases = [
        ({}, [], f"build {common} --bins", "target/release"),
        ({}, ["--deps-only", "r.json"], f"chef cook --recipe-path r.json {common}", None),
        ({"CARGO_BUILD_TARGET": "aarch64-unknown-linux-musl"}, [], f"build {common} --bins",
         "target/aarch64-unknown-linux-musl/release"),
        ({"CARGO_BUILD_TARGET": "aarch64-unknown-linux-musl", "HIPACHE_ZIGBUILD": "1"}, [],
         f"zigbuild {common} --target aarch64-unknown-linux-musl --bins", "target/aarch64-unknown-linux-musl/release"),
        ({"CARGO_BUILD_TARGET": "x86_64-unknown-linux-musl", "HIPACHE_ZIGBUILD": "1"}, ["--deps-only", "r.json"],
         f"chef cook --zigbuild --recipe-path r.json {common} --target x86_64-unknown-linux-musl", None),
        ({"HIPACHE_PROFILE": "dev"}, [], f"build --locked --profile dev -p hipache -p hipache-syncer --bins",
         "target/debug"),
    ]
    for extra, args, want, out in cases:
        log.unlink(missing_ok=True)
        res = run([script, *args], env={**env, **extra})
        assert res.returncode == 0, res.stderr
        assert log.read_text().strip() == want, (extra, args)
        if out:
            assert res.stdout.strip() == out, (extra, res.stdout)
    log.unlink(missing_ok=True)
    res = run([script], env={**env, "HIPACHE_ZIGBUILD": "yes"})
    assert res.returncode == 2 and not log.exists(), "a misspelt switch is refused, not ignored"
