# syntax=docker/dockerfile:1.12@sha256:93bfd3b68c109427185cd78b4779fc82b484b0b7618e36d0f104d4d801e66d25
# test-app image. Build:  docker build -f Dockerfile.app \
#   --build-arg GIT_SHA=$(git rev-parse HEAD) --build-arg APP_VERSION=1.2.3 -t test-app:1.2.3 .
#
# Python 3.11, not 3.12: stock hug 2.6.1 imports distutils (removed in 3.12) and cgi (removed in
# 3.13). The base is pinned by digest (python:3.11.16-slim-bookworm, multi-arch index); refresh
# tag and digest together, e.g. with `docker buildx imagetools inspect python:3.11-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- deps: the runtime packages in a virtualenv; the runtime stage is built on it -----------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.txt ./
# requirements.txt also lists the test runner; it stays out of the runtime virtualenv.
RUN sed '/^pytest==/d' requirements.txt > runtime-requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r runtime-requirements.txt

# --- test: the unit tests against exactly those packages ----------------------------------------
FROM deps AS test
RUN /opt/venv/bin/pip install --no-cache-dir -r requirements.txt
COPY app/ ./app/
# Last instruction of the stage: the runtime stage copies the app from here, so no builder can
# skip it and a failing test fails the build.
RUN /opt/venv/bin/python -m pytest -q -p no:cacheprovider app

# --- runtime: the deps stage (Python and the virtualenv, no test tools) and the tested code -------
# Built on deps rather than copying its virtualenv: nothing to copy or hash again when only the
# code changed.
FROM deps AS runtime
# What no build arg and no code change touches comes first.
EXPOSE 8000
# gunicorn is PID 1: it receives SIGTERM and drains (see gunicorn.conf.py); STOPSIGNAL says so.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:__hug_wsgi__"]
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_NAME=test-app \
    APP_ENV=dev \
    BIND=0.0.0.0:8000
WORKDIR /app
ARG GIT_SHA=unknown
ARG APP_VERSION=0.0.0-dev
ARG SOURCE_URL=""
# A deliberately bad build for the canary's tests: `--build-arg TESTAPP_FAULT=500` and `/` answers
# 500 while the probes pass (see app.py). Empty, the default, is a good build.
ARG TESTAPP_FAULT=""
COPY --from=test /src/app/app.py /src/app/accesslog.py /src/app/metrics.py /src/app/lifecycle.py \
     /src/app/gunicorn.conf.py ./
# Bytecode now: the root filesystem is read-only at run time. Being a RUN after the ARGs, it also
# keys the layers below on the build args for builders that key only RUN on them (buildah 1.28
# would otherwise reuse the labels and environment of another commit's build).
RUN ["python", "-m", "compileall", "-q", "/app"]
LABEL org.opencontainers.image.title="test-app" \
      org.opencontainers.image.description="The hug web service released by testapp-operator" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}"
ENV GIT_SHA=${GIT_SHA} \
    APP_VERSION=${APP_VERSION} \
    TESTAPP_FAULT=${TESTAPP_FAULT}
# A numeric UID (not a name) so Kubernetes' runAsNonRoot can verify it; it owns no file here.
USER 10001:10001
