# The flow-run image: what every Prefect flow run of the prd deployments runs in, as an
# ECS/Fargate task started by the prefect-aws worker (pool `papyrus-ecs`,
# deployments/prd/ecs-pool.json). docs/production.md builds and pushes it:
#   docker build -t <registry>/papyrus-ops:<commit> .
# The code sits at the literal /opt/papyrus-ops, the prd deployments' pull step. The root
# .dockerignore is an allow-list: no .venv, .git, .sandbox (its PostgreSQL's server.key),
# .prefect, docs/evidence, bench/out or tests reach the build context.
#
# The base is pinned by digest (refresh deliberately with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`); every dependency is pinned by
# constraints.txt, the versions the suite tested.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

WORKDIR /opt/papyrus-ops

# Dependencies first (their layer is reused while only code changes).
COPY constraints.txt pyproject.toml ./
COPY service/pyproject.toml service/constraints.txt service/README.md ./service/
COPY service/papyrus/ ./service/papyrus/
COPY ground/ ./ground/
COPY artifacts/ ./artifacts/
COPY tasks/ ./tasks/
COPY flows/ ./flows/
COPY papyrus_ops/ ./papyrus_ops/
COPY deployments/ ./deployments/
COPY prefect.yaml ./
# The RDS CA bundle the flows verify the database with in prd ([db] ssl_root_cert), pinned by
# SHA-256 as in the service image (service/tls/).
COPY service/tls/ /tmp/tls/
RUN python /tmp/tls/fetch-rds-ca-bundle.py /tmp/tls/rds-global-bundle.sha256 \
       /etc/ssl/rds/global-bundle.pem && rm -rf /tmp/tls
# Editable (compat), like the checkout: the CLI and the flows read deployments/<env>/ and
# service/ from /opt/papyrus-ops.
# pip compiles the dependencies' bytecode; the editable checkout's own packages are compiled
# here, since PYTHONDONTWRITEBYTECODE keeps Python from caching them at each flow run's start.
RUN pip install -c constraints.txt --config-settings editable_mode=compat -e ./service -e . \
    && python -m compileall -q ground artifacts tasks flows papyrus_ops service/papyrus \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin papyrus \
    && mkdir -p /tmp/evidence && chown 10001 /tmp/evidence

USER 10001
# Evidence is written here, then uploaded to the evidence bucket (the pool's env says so too).
ENV PAPYRUS_EVIDENCE_ROOT=/tmp/evidence

# The prefect-aws worker gives the command (`prefect flow-run execute` for the run); this is
# what the image does on its own.
CMD ["papyrus-ops", "--help"]
