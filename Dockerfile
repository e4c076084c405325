# syntax=docker/dockerfile:1
#
# The keyward operator image: one static binary (x86_64-unknown-linux-musl) on
# distroless/static, running as the non-root user 65532 with nothing else in the image (no
# shell, no package manager). The Helm chart (charts/keyward) runs it with a read-only root
# filesystem; the binary writes no files.
#
# NOT BUILT HERE: no Docker engine runs on the project's development or CI machines, so this
# file is neither built nor tested by hack/test.sh or CI. Build it where a BuildKit engine runs:
#
#   docker build -t ghcr.io/keyward/keyward:0.1.0 .
#
# The tag should match charts/keyward/Chart.yaml's appVersion (the chart's default image.tag).

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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /keyward /keyward
USER 65532:65532
# /healthz, /readyz and /metrics (--http-addr, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/keyward"]
CMD ["run"]
