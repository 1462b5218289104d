# syntax=docker/dockerfile:1
# modelcache's image: what the rendered Job, init containers, serve, the mirror and GC run.
#   make image                      (docker build with the labels filled; skipped without a builder)
#   docker build -t modelcache:0.1.0 .   then push it where your cluster pulls from and render
#                                         with --image REGISTRY/modelcache:0.1.0
# Reproducible: the base image is pinned by digest, every Python dependency by version and file
# hash (deploy/image/requirements.txt, installed with --require-hashes), the build tools too.
# A non-root user (uid/gid 1000, the manifests' --run-as-user/--fs-group defaults); nothing
# written at run time outside the cache volume and /tmp (the manifests mount the root
# filesystem read-only). tini is PID 1 for `docker run`; the rendered pods set `command:` and
# run modelcache as PID 1, which then handles SIGTERM itself.
#
# The base digest is python:3.11.10-slim-bookworm (linux/amd64+arm64 index) as published on
# Docker Hub; check or refresh it with
#   docker buildx imagetools inspect docker.io/library/python:3.11-slim-bookworm
# and pass another with --build-arg PYTHON_IMAGE=... (a wrong digest fails the build).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/image/build-requirements.txt /tmp/build-requirements.txt
RUN pip install --require-hashes -r /tmp/build-requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="modelcache" \
      org.opencontainers.image.description="Keep Hugging Face model caches complete, verified and tidy: download, check, serve, manage." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/model-store
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1000 modelcache \
 && useradd --system --uid 1000 --gid 1000 --home-dir /home/modelcache --create-home \
            --shell /usr/sbin/nologin modelcache
COPY deploy/image/requirements.txt /tmp/requirements.txt
RUN pip install --require-hashes -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels
USER 1000:1000
WORKDIR /home/modelcache
ENTRYPOINT ["/usr/bin/tini", "--", "modelcache"]
CMD ["--help"]
