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
COPY . .
# The workspace member to install, e.g. tandem-signaling.
ARG PACKAGE
RUN if [ -z "${PACKAGE}" ]; then echo "build with --build-arg PACKAGE=tandem-<service>" >&2; exit 2; fi; \
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
ENTRYPOINT ["tandem-media-worker"]
