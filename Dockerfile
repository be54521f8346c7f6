# syntax=docker/dockerfile:1
# order-api: a build stage makes /opt/venv from uv.lock; the runtime stage is the slim base plus
# that virtualenv and nothing else. Build: docker build -t order-api .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# strip (binutils) drops the debug info that wheels ship in their extension modules (~40 MB).
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

# The uv the Makefile pins, from PyPI like the Makefile gets it: one registry for everything.
RUN pip install --no-cache-dir --root-user-action=ignore "uv==0.13.9"

# copy: the cache mount is another filesystem; never: use the base image's Python only
# (python3, not python3.11: PYTHON_IMAGE may name another version).
ENV UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src

# Dependencies alone first: this layer is rebuilt only when uv.lock or pyproject.toml change.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-editable --no-install-project

# Then the project itself, installed as a wheel (migrations and templates are package data).
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
# No --compile-bytecode: .pyc files would add ~40 MB and take the image over 200 MB; the runtime
# caches bytecode under PYTHONPYCACHEPREFIX instead.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable \
    && find /opt/venv -name "*.so" -type f -exec strip --strip-debug {} +


FROM ${PYTHON_IMAGE} AS runtime

# A fixed UID/GID, so volume permissions and policies can name it; no login, no home.
RUN groupadd --system --gid 10001 order-api \
    && useradd --system --uid 10001 --gid order-api --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin order-api

# The venv stays root-owned: the app cannot rewrite its own code.
COPY --from=build /opt/venv /opt/venv

# Neither the venv nor the base image ships .pyc files: each container caches its own in /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONPYCACHEPREFIX=/tmp/pycache \
    ENVIRONMENT=production
WORKDIR /app
USER 10001:10001

EXPOSE 8000
# uvicorn stops gracefully on SIGTERM: SHUTDOWN_TIMEOUT_SECONDS (20) for in-flight requests.
STOPSIGNAL SIGTERM
# The API's check. A worker run from this image outside compose must override it (--health-cmd
# with the heartbeat probe, as compose.yaml does, or --no-healthcheck): it has no HTTP port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "order_api.ops.probe", "http://127.0.0.1:8000/health/live"]
CMD ["order-api", "serve", "--host", "0.0.0.0", "--port", "8000"]
