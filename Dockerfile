# smsgw: one multi-stage build for every service, a target each. From the repository root:
#   docker build --target api -t smsgw-api .
# Targets: api (the default), inbound, modem-worker, smpp-worker, sims (the SMSC and modem
# simulators, for development). docker-compose.yml builds each service's target.
# Every image runs as the unprivileged user `smsgw` (uid 10001) and reads its settings from
# SMSGW_CONFIG and SMSGW_* variables (docker-compose.yml: config/docker.toml).

FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first (cached while only the code changes).
COPY pyproject.toml uv.lock README.md ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/api/pyproject.toml services/api/pyproject.toml
COPY services/inbound/pyproject.toml services/inbound/pyproject.toml
COPY services/modem-worker/pyproject.toml services/modem-worker/pyproject.toml
COPY services/smpp-worker/pyproject.toml services/smpp-worker/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace --package smsgw
# The sources (.dockerignore keeps out .git, .env, .run, virtualenvs and caches).
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package smsgw

FROM python:3.11-slim AS runtime
# dialout: USB modems passed in with `devices:` belong to that group.
RUN useradd --system --uid 10001 --user-group --groups dialout --home-dir /app \
      --shell /usr/sbin/nologin smsgw \
  && mkdir -p /app/.run/state \
  && chown -R smsgw:smsgw /app/.run
WORKDIR /app
# Owned by root: the services can read their code and config, not change them. They write
# only /app/.run (workers' journals, workers.state_dir).
COPY --from=build /app/.venv /app/.venv
COPY config /app/config
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER smsgw

FROM runtime AS inbound
EXPOSE 9101
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9101/healthz', timeout=2).status == 200 else 1)"
CMD ["smsgw", "inbound"]

FROM runtime AS modem-worker
EXPOSE 9102
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=2).status == 200 else 1)"
CMD ["smsgw", "modem-worker"]

FROM runtime AS smpp-worker
EXPOSE 9103
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9103/healthz', timeout=2).status == 200 else 1)"
CMD ["smsgw", "smpp-worker"]

# The simulators: `smsgw sim smsc` (SMPP 2775, control 2780) or `smsgw sim modem` (TCP
# 7001…, control 7000). Their control interfaces have no authentication: never publish them
# beyond 127.0.0.1.
FROM runtime AS sims
EXPOSE 2775 2780 7000 7001 7002
CMD ["smsgw", "sim", "smsc"]

# Last, so that a plain `docker build .` builds the API.
FROM runtime AS api
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["smsgw", "api"]
