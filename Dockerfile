FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker worker
COPY tasks tasks
COPY handlers handlers
COPY schemas schemas
COPY migrations migrations
COPY celeryconfig.py alembic.ini ./
RUN pip install --no-cache-dir ".[production]" && useradd --system --uid 10001 videoworker
USER videoworker
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO"]
