# parcelwatch worker: slim, non-root, pinned dependencies, health-checked.
# Build: docker build -t parcelwatch .   Run: see deploy/docker-compose.yml (Apache Kafka + Redis).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PARCELWATCH_BROKER_KIND=kafka \
    PARCELWATCH_STORE=rocksdb:// \
    PARCELWATCH_DATA_DIR=/data \
    PARCELWATCH_WEB_HOST=0.0.0.0 \
    PARCELWATCH_WEB_PORT=6066

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin parcelwatch \
    && mkdir -p /data && chown parcelwatch /data

COPY --chown=parcelwatch:parcelwatch app.py ./
COPY --chown=parcelwatch:parcelwatch agents/ agents/
COPY --chown=parcelwatch:parcelwatch alerting/ alerting/
COPY --chown=parcelwatch:parcelwatch config/ config/
COPY --chown=parcelwatch:parcelwatch core/ core/
COPY --chown=parcelwatch:parcelwatch delivery/ delivery/
COPY --chown=parcelwatch:parcelwatch detectors/ detectors/
COPY --chown=parcelwatch:parcelwatch devtools/ devtools/
COPY --chown=parcelwatch:parcelwatch domain/ domain/
COPY --chown=parcelwatch:parcelwatch importers/ importers/
COPY --chown=parcelwatch:parcelwatch ingest/ ingest/
COPY --chown=parcelwatch:parcelwatch issue_queue/ issue_queue/
COPY --chown=parcelwatch:parcelwatch subscriptions/ subscriptions/
COPY --chown=parcelwatch:parcelwatch telemetry/ telemetry/
COPY --chown=parcelwatch:parcelwatch web/ web/

USER parcelwatch
VOLUME ["/data"]
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os,urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PARCELWATCH_WEB_PORT','6066'), timeout=4); sys.exit(0)"
CMD ["python", "app.py", "worker", "-l", "info"]
