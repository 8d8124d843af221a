# The temporal-tracer collector: `docker build -t temporal-tracer .`
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracer ./tracer
COPY interceptors ./interceptors
COPY web ./web
COPY migrations ./migrations
# The collector and its PostgreSQL driver; the sample service runs `demo` against the
# compose file's Temporal, so the image needs no embedded server (the demo extra).
RUN pip install --no-cache-dir '.[collector,postgres]' && useradd --system --home /data tracer \
    && mkdir -p /data && chown tracer /data

USER tracer
WORKDIR /data
# Inside a container the UI must listen on every interface to be reachable.
ENV TEMPORAL_TRACER_HOST=0.0.0.0
EXPOSE 8700 4318 4317
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz')"
ENTRYPOINT ["temporal-tracer"]
CMD ["serve"]
