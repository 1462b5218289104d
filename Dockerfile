# modelcache's image: what the rendered Job, init containers, serve and GC run.
#   docker build -t modelcache:0.1.0 .      (then push it where your cluster pulls from
#                                             and render with --image REGISTRY/modelcache:0.1.0)
# Slim Python, the package installed from a wheel built in a first stage, a non-root user
# (uid/gid 1000, the manifests' --run-as-user/--fs-group defaults), nothing written at run
# time outside the cache volume and /tmp (the manifests mount the root filesystem read-only).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --disable-pip-version-check build \
 && python -m build --wheel --outdir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/model-store
RUN groupadd --system --gid 1000 modelcache \
 && useradd --system --uid 1000 --gid 1000 --home-dir /home/modelcache --create-home \
            --shell /usr/sbin/nologin modelcache
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
USER 1000:1000
WORKDIR /home/modelcache
ENTRYPOINT ["modelcache"]
CMD ["--help"]
