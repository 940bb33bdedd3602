# syntax=docker/dockerfile:1
# One image for every warren subcommand: the pod's args choose (web, worker, ...).
# It also holds warren-worker, `warren worker` alone, which the worker's pods run: less
# code mapped per replica.
#
#   docker build -t warren:local .
#   docker run --rm warren:local --help
#
# Stage 1 builds the release binary; stage 2 is a distroless glibc runtime
# (no shell, no package manager) running as the unprivileged user 65532.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and target/ between builds; the binary
# is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p warren --locked \
    && install -D -m 0755 target/release/warren /out/warren \
    && install -D -m 0755 target/release/warren-worker /out/warren-worker

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="warren" \
      org.opencontainers.image.description="Queue-driven autoscaling for RabbitMQ workers" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/warren /out/warren-worker /usr/local/bin/
USER 65532:65532
# web: 3000 (PORT), worker metrics: 9100 (METRICS_PORT)
EXPOSE 3000 9100
ENTRYPOINT ["/usr/local/bin/warren"]
CMD ["web"]
