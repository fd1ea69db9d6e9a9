# syntax=docker/dockerfile:1
# Portcullis container image: build with `docker build -t portcullis .`, or use docker-compose.yml.

FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and incremental artefacts between builds; the binary is copied
# out in the same step because the target cache is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portcullis \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Templates and migrations are embedded in the binary: only the binary is copied.
# A fixed UID and GID (10001:10001): Kubernetes manifests name them (deploy/kubernetes/), and
# `useradd --system --user-group` alone would pick a GID below 1000.
RUN groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin portcullis
WORKDIR /app
# keys/ must exist and belong to the runtime user: a named volume mounted here takes this
# ownership, and the key-encryption key is created in it on first start.
RUN mkdir -p /app/keys /app/data && chown portcullis:portcullis /app/keys /app/data && chmod 0700 /app/keys
COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis
# Numeric, so a runtime can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["portcullis"]
CMD ["serve"]
