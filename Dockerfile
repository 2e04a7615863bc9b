# syntax=docker/dockerfile:1
# The persona image: one binary, every role. The charts pass the subcommand as the
# container's args (operator, shard, gateway, detokenizer).
#
#   docker build -t ghcr.io/persona-dev/persona:dev .
#
# Needs BuildKit (the cache mounts keep the cargo registry and target/ between
# builds). No protoc or cmake is needed: protoc comes from protoc-bin-vendored and
# aws-lc-sys builds with the C compiler the builder image has.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p persona \
 && install -D -m 0755 target/release/persona /out/persona

# glibc and libgcc only, no shell, no package manager; the same Debian release as
# the builder, so the glibc the binary was linked against is there.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="persona" \
      org.opencontainers.image.description="persona: real-time offer personalization for banks, with customer data kept on-prem" \
      org.opencontainers.image.source="https://github.com/persona-dev/persona" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/persona /usr/local/bin/persona
# The uid and gid the charts' securityContexts run as (distroless' nonroot).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/persona"]
