# The Switchboard services (classification, context, orchestration), the edge's front
# door and the trace receiver: one image, the service is the command.
#
#   docker build -f docker/app.Dockerfile -t switchboard-app:dev .
#   docker run --read-only --tmpfs /tmp -v sb-data:/data -e SWITCHBOARD_PORT=50051 \
#     switchboard-app:dev python -m switchboard_server classification
#
# Without a registry: --build-arg BASE_IMAGE=<a local image with python3.11 and venv>
# and --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=<a wheelhouse URL> (what
# `make container-smoke` does, see docs/deploy.md).
ARG BASE_IMAGE=python:3.11-slim

# -- builder: every wheel of the image's lock (hash-checked), then Switchboard into a venv
FROM ${BASE_IMAGE} AS builder
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# docker/requirements-app.lock: the server and redis extras and the build backend, at the
# pins of requirements.lock (`make lock` writes both); no dev or mesh tools.
COPY docker/requirements-app.lock ./
# pip from a venv (ensurepip): a distribution's python3 may come without pip.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip wheel --quiet --require-hashes --wheel-dir /wheels -r requirements-app.lock
COPY pyproject.toml README.md ./
COPY clients clients
COPY server server
# Only the locked wheels from here on: the project's build backend and its run-time
# dependencies (server and redis extras) all come from /wheels. pip compiles the
# bytecode as it installs, so a read-only root filesystem costs no start-up time.
RUN python -m venv /opt/switchboard \
    && /opt/switchboard/bin/python -m pip install --quiet --no-index --find-links /wheels \
        "/src[server,redis]"

# -- final: the venv on the bare base; no compilers, no wheels, no sources ---------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="switchboard-app" \
      org.opencontainers.image.description="Switchboard gRPC services" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/switchboard /opt/switchboard
# Read-only root filesystem friendly: state goes to /data (mount a volume), scratch to
# /tmp (mount a tmpfs); HOME and TMPDIR point there, and nothing writes bytecode.
RUN mkdir -p /data && chown 10001:10001 /data
ENV PATH=/opt/switchboard/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWITCHBOARD_DATA_DIR=/data \
    SWITCHBOARD_LOG_FORMAT=json
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /data
# A real grpc.health.v1 Check of the overall status (exit 0 only on SERVING), on the
# app's port; Compose and Kubernetes configure their own probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec switchboard-health --address \"127.0.0.1:${SWITCHBOARD_PORT:-50051}\""]
CMD ["switchboard", "--help"]
