# syntax=docker/dockerfile:1
# bulkwatch container image: docs/operations.md#container
#
#   docker build -t bulkwatch .
#   docker run -v bulkwatch-state:/var/lib/bulkwatch \
#     -v "$PWD/bulkwatch.yaml:/etc/bulkwatch/config.yaml:ro" -p 9464:9464 bulkwatch
#
# BASE_IMAGE must be a Debian-like image with python3 (>= 3.11) and its venv module; the
# build and runtime stages share it, so the venv's interpreter path exists at runtime.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.8
ENV UV_PROJECT_ENVIRONMENT=/opt/bulkwatch \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first, exactly as locked: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY src ./src
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="bulkwatch" \
      org.opencontainers.image.description="Watch Shoplazza and Shopline background tasks and deliver every change" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid, so volume ownership and Kubernetes' runAsUser agree.
RUN groupadd --gid 10001 bulkwatch \
    && useradd --no-log-init --no-create-home --uid 10001 --gid bulkwatch \
        --home-dir /var/lib/bulkwatch --shell /usr/sbin/nologin bulkwatch \
    && install -d -o bulkwatch -g bulkwatch -m 0750 /var/lib/bulkwatch \
    && install -d -m 0755 /etc/bulkwatch
COPY --from=build /opt/bulkwatch /opt/bulkwatch
COPY deploy/container/config.yaml /etc/bulkwatch/config.yaml
ENV PATH="/opt/bulkwatch/bin:${PATH}" \
    BULKWATCH_CONFIG=/etc/bulkwatch/config.yaml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The default state.url (sqlite:///bulkwatch.db) is relative: it lands in the volume.
WORKDIR /var/lib/bulkwatch
VOLUME ["/var/lib/bulkwatch"]
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
# Exec form: bulkwatch is PID 1 and gets SIGTERM itself, then drains and exits 0.
ENTRYPOINT ["bulkwatch"]
CMD ["run"]
