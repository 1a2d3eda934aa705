# syntax=docker/dockerfile:1
#
# Two images from one build: one target per binary, so that each image holds
# one program and the proxy's carries no Kubernetes client.
#
#   docker build --target hipache        -t hipache .
#   docker build --target hipache-syncer -t hipache-syncer .
#
# Static (musl) binaries on distroless/static: no shell, no package manager,
# a non-root user (65532), and nothing written at run time, so both run with
# a read-only root filesystem. The cargo command lives in
# scripts/build-release, shared with CI. No secret is read at build time.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

# --- chef: the Rust toolchain, the musl target and cargo-chef ---------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-gcc for the C parts of ring; the binaries are linked statically.
# The rust image pins the Debian release; musl-tools follows its point releases.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)" \
    && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# --- planner: the dependency recipe (changes only with Cargo.toml/lock) -----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies in their own cached layer, then our crates -------
FROM chef AS builder
COPY scripts/build-release scripts/build-release
COPY --from=planner /src/recipe.json recipe.json
RUN CARGO_BUILD_TARGET="$(cat /rust-target)" scripts/build-release --deps-only recipe.json
COPY . .
RUN out="$(CARGO_BUILD_TARGET="$(cat /rust-target)" scripts/build-release)" \
    && mkdir -p /out \
    && cp "${out}/hipache" "${out}/hipache-syncer" /out/ \
    && /out/hipache --version \
    && /out/hipache-syncer --version

# --- hipache-syncer: Kubernetes Ingresses to Redis -----------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS hipache-syncer
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
FROM gcr.io/distroless/static-debian12:nonroot AS hipache
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
