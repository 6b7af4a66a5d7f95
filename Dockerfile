# syntax=docker/dockerfile:1
#
# tollgate container image.
#
#   docker build -t tollgate .
#   docker run --rm -p 8080:8080 \
#     -e TOLLGATE_REDIS_URL=redis://redis:6379/0 \
#     -e TOLLGATE_ADMIN_KEY="$(cat admin.key)" \
#     -v "$PWD/policies:/etc/tollgate/policies:ro" \
#     tollgate
#
# Mount your own /etc/tollgate/tollgate.toml (policies.dir = "policies" there
# means /etc/tollgate/policies) or keep the built-in one, which is
# config/tollgate.toml with the policy folder moved next to it and
# policies/example.toml in it (scripts/image-config.sh), so the image starts
# as it is; mount your own policies over /etc/tollgate/policies.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# pingora's zlib-ng build needs cmake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tollgate \
    && install -m 0755 target/release/tollgate /usr/local/bin/tollgate
# The shipped config and example policy; tests/integration/cli.rs runs the same script
# and `tollgate check` on its result.
RUN scripts/image-config.sh /src /etc-tollgate

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tollgate
COPY --from=build /usr/local/bin/tollgate /usr/local/bin/tollgate
COPY --from=build /etc-tollgate /etc/tollgate

ENV TOLLGATE_LOG=info \
    TOLLGATE_LOG_FORMAT=json
USER tollgate:tollgate
WORKDIR /etc/tollgate
# proxy, admin, metrics
EXPOSE 8080 9080 9091

# Loopback inside a container is private to it, so admin and metrics listen
# on all of the container's interfaces: publish 9080 and 9091 only to a
# private network.
# The health check speaks HTTP through bash's /dev/tcp: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.toml", "--admin-listen", "0.0.0.0:9080", "--metrics-listen", "0.0.0.0:9091"]
