# syntax=docker/dockerfile:1
#
# Two images from one build: one target per binary, so that each image holds
# one program and the proxy's carries no Kubernetes client.
#
#   docker build --target hipache        -t hipache .
#   docker build --target hipache-syncer -t hipache-syncer .
#   docker buildx build --platform linux/amd64,linux/arm64 --target hipache ...
#
# Static (musl) binaries on distroless/static: no shell, no package manager,
# a non-root user (65532), and nothing written at run time, so both run with
# a read-only root filesystem. The cargo command lives in
# scripts/build-release, shared with CI. No secret is read at build time.
#
# Cross-built: the Rust stages run on the build machine's own platform
# (`--platform=$BUILDPLATFORM`) and compile for the image's (TARGETARCH:
# amd64 or arm64) with cargo-zigbuild, zig being the C compiler of ring and
# the linker for both musl targets; nothing runs under emulation, so an
# arm64 image builds on an amd64 machine at native speed. Only the final
# stages are of the target platform, and they only copy files.
#
# Base images are pinned by digest: the digest of the multi-platform index,
# so the one reference serves every platform, and a tag moved upstream
# changes nothing here until the digest is bumped. The tag beside it says
# what the digest was. To refresh one (then rebuild and run the tests):
#
#   docker buildx imagetools inspect docker.io/library/rust:1.95.0-slim-bookworm \
#       --format '{{json .Manifest.Digest}}'
#   crane digest gcr.io/distroless/static-debian12:nonroot
#
# (Renovate's dockerfile manager with `pinDigests` proposes the same bumps.)
# docs/images.md has the build-and-push commands and the CI job.

ARG CARGO_CHEF_VERSION=0.1.78
# zig and cargo-zigbuild, both from PyPI (their wheels carry the binaries).
ARG ZIG_VERSION=0.14.1
ARG CARGO_ZIGBUILD_VERSION=0.20.1

# --- chef: the Rust toolchain, both musl targets, zig, cargo-chef ------------
FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS chef
ARG CARGO_CHEF_VERSION
ARG ZIG_VERSION
ARG CARGO_ZIGBUILD_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# pip for zig and cargo-zigbuild. The rust image pins the Debian release;
# python3-pip follows its point releases.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*
# The image's Python holds nothing else: install into it
# (--break-system-packages) rather than into a venv on PATH.
RUN pip3 install --no-cache-dir --break-system-packages \
        "ziglang==${ZIG_VERSION}" "cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}" \
    && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl \
    && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# --- planner: the dependency recipe (changes only with Cargo.toml/lock) -----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies in their own cached layer, then our crates -------
FROM chef AS builder
# Set by BuildKit: the image's architecture, and the build machine's.
ARG TARGETARCH
ARG BUILDARCH
COPY scripts/build-release scripts/build-release
COPY --from=planner /src/recipe.json recipe.json
# The Rust target of the image's platform (amd64 without BuildKit).
RUN case "${TARGETARCH:-amd64}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && CARGO_BUILD_TARGET="$(cat /rust-target)" HIPACHE_ZIGBUILD=1 scripts/build-release --deps-only recipe.json
COPY . .
# The binaries run here only when they are of the build machine's
# architecture (a cross-built one cannot start without emulation).
RUN out="$(CARGO_BUILD_TARGET="$(cat /rust-target)" HIPACHE_ZIGBUILD=1 scripts/build-release)" \
    && mkdir -p /out \
    && cp "${out}/hipache" "${out}/hipache-syncer" /out/ \
    && if [ "${TARGETARCH:-amd64}" = "${BUILDARCH:-amd64}" ]; then \
        /out/hipache --version && /out/hipache-syncer --version; \
    fi

# --- hipache-syncer: Kubernetes Ingresses to Redis -----------------------------
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS hipache-syncer
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hipache-syncer" \
      org.opencontainers.image.description="Kubernetes controller that writes Ingress routes into Hipache's Redis schema." \
      org.opencontainers.image.source="https://github.com/hipache/hipache-rs" \
      org.opencontainers.image.url="https://github.com/hipache/hipache-rs" \
      org.opencontainers.image.documentation="https://github.com/hipache/hipache-rs/blob/main/docs/syncer.md" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="hipache" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=builder /out/hipache-syncer /usr/local/bin/hipache-syncer
USER 65532:65532
EXPOSE 9102
ENTRYPOINT ["/usr/local/bin/hipache-syncer"]

# --- hipache: the proxy (last: the default target) --------------------------
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS hipache
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hipache" \
      org.opencontainers.image.description="A Redis-configured HTTP and WebSocket reverse proxy, compatible with Hipache." \
      org.opencontainers.image.source="https://github.com/hipache/hipache-rs" \
      org.opencontainers.image.url="https://github.com/hipache/hipache-rs" \
      org.opencontainers.image.documentation="https://github.com/hipache/hipache-rs/blob/main/docs/configuration.md" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="hipache" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=builder /out/hipache /usr/local/bin/hipache
# Used when no --config is given (the chart passes its own): unprivileged
# ports, every address, access log on stdout, admin listener for probes.
COPY packaging/docker/config.json /etc/hipache/config.json
WORKDIR /etc/hipache
USER 65532:65532
EXPOSE 8080 8443 10264
ENTRYPOINT ["/usr/local/bin/hipache"]
