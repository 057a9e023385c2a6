# The smoke test's stand-ins for the upstream Redis and Prometheus images (no registry
# is reachable here): Debian bookworm's redis-server and prometheus packages on the same
# local base as the Switchboard images. Built with --network host (apt over the host).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# Versions are those of the base's Debian suite.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /prometheus \
    && chown 10001:10001 /data /prometheus
# Redis writes its append-only file to its working directory (a volume in Compose).
WORKDIR /data
USER 10001:10001
CMD ["redis-server", "--version"]
