# syntax=docker/dockerfile:1.7
# One image per service, built from the repository root, e.g.
#   docker build --target signaling --build-arg PACKAGE=tandem-signaling .
# (skaffold.yaml builds all five). Each image holds only its service's distribution and
# dependencies, installed from uv.lock into /opt/venv, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# the uv that writes uv.lock here
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# The workspace member to install, e.g. tandem-signaling.
ARG PACKAGE
# Dependencies first, from the lock and the members' pyproject.toml only, so that a source change
# does not reinstall them (tests/unit/deploy checks that every workspace member is listed here).
COPY uv.lock pyproject.toml ./
COPY services/common/pyproject.toml services/common/
COPY services/matchmaking/pyproject.toml services/matchmaking/
COPY services/signaling/pyproject.toml services/signaling/
COPY services/media-worker/pyproject.toml services/media-worker/
COPY services/orders/pyproject.toml services/orders/
COPY operators/media-autoscaler/pyproject.toml operators/media-autoscaler/
COPY tools/devstack/pyproject.toml tools/devstack/
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ -z "${PACKAGE}" ]; then echo "build with --build-arg PACKAGE=tandem-<service>" >&2; exit 2; fi; \
    uv sync --frozen --no-dev --no-install-workspace --package "${PACKAGE}"
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tandem
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001

FROM runtime AS signaling
COPY --from=build /opt/venv /opt/venv
ENTRYPOINT ["tandem-signaling"]

FROM runtime AS matchmaking
COPY --from=build /opt/venv /opt/venv
ENTRYPOINT ["tandem-matchmaking"]

FROM runtime AS orders
COPY --from=build /opt/venv /opt/venv
ENTRYPOINT ["tandem-orders"]

FROM runtime AS media-autoscaler
COPY --from=build /opt/venv /opt/venv
ENTRYPOINT ["python", "-m", "tandem.autoscaler"]

FROM runtime AS media-worker
COPY --from=build /opt/venv /opt/venv
# Numba keeps the compiled call-audio kernels here: the root filesystem is read-only, so the chart
# mounts a writable emptyDir at this path (the worker compiles them before it reports ready).
ENV NUMBA_CACHE_DIR=/var/cache/tandem/numba
ENTRYPOINT ["tandem-media-worker"]
