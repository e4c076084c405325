# syntax=docker/dockerfile:1
#
# The keyward operator image: one static binary (x86_64-unknown-linux-musl) and nothing else
# (no shell, no package manager, no CA bundle: the operator trusts only the cluster's CA, from
# its ServiceAccount), running as the non-root user 65532. The Helm chart (charts/keyward) runs
# it with a read-only root filesystem; the binary writes no files.
#
# Build it where a BuildKit engine runs:
#
#   docker build -t ghcr.io/keyward/keyward:0.1.0 .
#
# The tag should match charts/keyward/Chart.yaml's appVersion (the chart's default image.tag).
#
# Without an engine or a registry, hack/image.sh builds the same image: the same cargo command,
# then this file's final stage read by hack/oci.py, which refuses any instruction it would not
# reproduce exactly. So the final stage stays FROM scratch with one COPY per file.

FROM rust:1.95-bookworm AS build
# musl-gcc for the C parts of dependencies (ring); rustls, no OpenSSL, so nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# The musl target links statically by default. The cache mounts keep the crates.io downloads
# and the build directory between builds; the binary is copied out of the mounted target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin keyward --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/keyward /keyward

FROM scratch
COPY --from=build /keyward /keyward
USER 65532:65532
# /healthz, /readyz and /metrics (--http-addr, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/keyward"]
CMD ["run"]
