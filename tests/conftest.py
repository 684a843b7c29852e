"""Shared fixtures: real PostgreSQL, Redis and HTTP S3 for the whole session.

With ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` / ``TEST_S3_ENDPOINT_URL`` set, those
services are used (the database is migrated from scratch, Redis is flushed); any not
given is started embedded, on loopback, under a temporary directory.
``TEST_BROKER_URL`` (``amqp://…/vhost``) puts the broker elsewhere, RabbitMQ
included; results, the stats cache and events stay in Redis.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from sqlalchemy import Engine, create_engine, insert, text

from worker.dev.embedded import EmbeddedStack
from worker.settings import Settings, get_settings, load_settings

TEST_BUCKET = "videoworker-test"
TABLES = (
    "shares",
    "exports",
    "deletion_audit",
    "mall_retention",
    "storage_deletions",
    "processing_jobs",
    "videos",
    "camera_pins",
    "malls",
    # No foreign key to videos: emptied on their own.
    "video_daily_analytics",
    "analytics_flushes",
    "access_log_objects",
    "mall_daily_analytics",
    "pin_daily_analytics",
    "video_span_analytics",
)


# The order a whole run takes: unit, integration, e2e, faults. The e2e session's worker
# lives until the run ends and its events relay leads on the test database, so the
# integration tests that drive relays of their own (and take its lock) must come first.
SUITE_ORDER = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = _parts(item)
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        elif "faults" in parts:
            # Real worker processes too, but on a stack of their own that they stop and
            # restart, whatever TEST_* URLs say.
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.faults)
    items.sort(key=_suite_rank)


def _suite_rank(item: pytest.Item) -> int:
    parts = _parts(item)
    return next((rank for rank, room in enumerate(SUITE_ORDER) if room in parts), 0)


def _parts(item: pytest.Item) -> tuple[str, ...]:
    # Relative to the checkout, so a folder above it named "e2e" or "unit" changes nothing.
    path = Path(str(item.fspath))
    try:
        return path.relative_to(item.config.rootpath).parts
    except ValueError:
        return path.parts


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The embedded services this session needs (none when all TEST_* URLs are set)."""
    planned = EmbeddedStack.plan(
        tmp_path_factory.mktemp("stack"),
        postgres=not os.environ.get("TEST_DATABASE_URL"),
        redis=not os.environ.get("TEST_REDIS_URL"),
        s3=not os.environ.get("TEST_S3_ENDPOINT_URL"),
        bucket=TEST_BUCKET,
        durable=False,
        fixed_ports=False,
    )
    planned.start()
    yield planned
    planned.stop()


@pytest.fixture(scope="session")
def services(stack: EmbeddedStack) -> Iterator[dict[str, str]]:
    """Environment naming every service; also exported to this process's environment."""
    env = stack.environment()
    if url := os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = url
    if url := os.environ.get("TEST_REDIS_URL"):
        env.update(CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url, REDIS_URL=url)
    if url := os.environ.get("TEST_BROKER_URL"):
        # RabbitMQ (or another Redis) as the broker; results and cache stay in Redis.
        env["CELERY_BROKER_URL"] = url
    if url := os.environ.get("TEST_S3_ENDPOINT_URL"):
        env.update(
            S3_ENDPOINT_URL=url,
            S3_BUCKET=os.environ.get("TEST_S3_BUCKET", TEST_BUCKET),
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "videoworker"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "videoworker-secret"),
            AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
        )
    env["S3_PUBLIC_ENDPOINT_URL"] = ""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()

    from worker.adapters.postgres.migrate import downgrade, upgrade

    downgrade(env["DATABASE_URL"])
    upgrade(env["DATABASE_URL"])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    if os.environ.get("TEST_BROKER_URL"):
        from tests.brokers import broker_for

        # What an interrupted session left queued would reach this session's worker.
        broker_for(env["CELERY_BROKER_URL"]).purge()
    client = _s3_client(env)
    try:
        client.head_bucket(Bucket=env["S3_BUCKET"])
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=env["S3_BUCKET"])
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


def _s3_client(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


@pytest.fixture(scope="session")
def settings(services: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def engine(services: dict[str, str]) -> Iterator[Engine]:
    # Behind a transaction pooler (make test-pgbouncer) the tests' own statements must
    # not be prepared either: the next transaction may run on another server connection.
    pooled = os.environ.get("DB_POOLER") == "transaction"
    created = create_engine(
        services["DATABASE_URL"], connect_args={"prepare_threshold": None} if pooled else {}
    )
    yield created
    created.dispose()


@pytest.fixture(scope="session")
def s3(services: dict[str, str]):
    """A plain boto3 client on the test bucket's server, for arranging and checking objects."""
    return _s3_client(services)


@pytest.fixture(scope="session")
def bucket(services: dict[str, str]) -> str:
    return services["S3_BUCKET"]


@pytest.fixture(scope="session")
def redis_client(services: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(services["REDIS_URL"])


@pytest.fixture
def clean(engine: Engine, s3, bucket: str, redis_client: redis.Redis) -> None:
    """Empty tables, bucket and stats cache before a test."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for key in redis_client.scan_iter("videoworker:*"):
        redis_client.delete(key)


@dataclass
class RecordedEnqueue:
    """Stands in for Celery in-process: handlers' follow-up tasks are recorded, not sent."""

    calls: list[tuple[str, dict, float]] = field(default_factory=list)

    task_ids: list[str | None] = field(default_factory=list)

    def __call__(
        self, task: str, kwargs: dict, countdown: float, task_id: str | None = None
    ) -> None:
        self.calls.append((task, kwargs, countdown))
        self.task_ids.append(task_id)


@pytest.fixture(scope="session")
def wired(settings: Settings):

    from worker.bootstrap import build_deps

    return build_deps(settings, enqueue=RecordedEnqueue())


@pytest.fixture
def deps(wired, clean: None):
    """Handler dependencies wired to the real services, on a clean slate."""
    wired.enqueue.calls.clear()
    return wired


@dataclass
class Catalog:
    """Inserts malls, pins and videos (and their objects) the way the pipeline would."""

    engine: Engine
    s3: Any
    bucket: str
    malls: list[uuid.UUID] = field(default_factory=list)

    def mall(self, name: str = "Mall") -> uuid.UUID:
        from worker.adapters.postgres.tables import Mall

        mall_id = uuid.uuid4()
        with self.engine.begin() as conn:
            conn.execute(insert(Mall.__table__).values(id=mall_id, name=name))
        self.malls.append(mall_id)
        return mall_id

    def pin(self, mall_id: uuid.UUID, name: str = "Entrance A") -> uuid.UUID:
        from worker.adapters.postgres.tables import CameraPin

        pin_id = uuid.uuid4()
        with self.engine.begin() as conn:
            conn.execute(insert(CameraPin.__table__).values(id=pin_id, mall_id=mall_id, name=name))
        return pin_id

    def video(
        self,
        mall_id: uuid.UUID,
        pin_id: uuid.UUID,
        *,
        upload_objects: bool = True,
        proxy: bool = True,
        thumbnail: bool = True,
        jobs: int = 0,
        **columns: Any,
    ) -> dict[str, Any]:
        """A video row with sensible defaults; ``columns`` override any of them."""
        from worker.adapters.postgres.tables import ProcessingJob, Video

        video_id = columns.pop("id", None) or uuid.uuid4()
        row: dict[str, Any] = {
            "id": video_id,
            "mall_id": mall_id,
            "pin_id": pin_id,
            "original_filename": "video_001.mp4",
            "original_path": f"videos/{mall_id}/original/{video_id}.mp4",
            "file_size_bytes": 125_829_120,
            "checksum_sha256": "abc123",
            "proxy_path": f"videos/{mall_id}/proxy/{video_id}.mp4" if proxy else None,
            "proxy_size_bytes": 18_874_368 if proxy else None,
            "thumbnail_path": f"thumbnails/{mall_id}/{video_id}.jpg" if thumbnail else None,
            "width": 1920,
            "height": 1080,
            "fps": 30.0,
            "duration_seconds": 120.5,
            "codec": "h264",
            "processing_status": "completed" if proxy else "pending",
            "uploaded_at": datetime.now(UTC) - timedelta(minutes=1),
            "recorded_at": datetime(2025, 10, 31, 9, 30, tzinfo=UTC),
            "operator_notes": None,
        }
        row.update(columns)
        with self.engine.begin() as conn:
            conn.execute(insert(Video.__table__).values(**row))
            for _ in range(jobs):
                conn.execute(
                    insert(ProcessingJob.__table__).values(
                        id=uuid.uuid4(), video_id=video_id, status="completed"
                    )
                )
        if upload_objects:
            for key in self.keys(row):
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"\x00" * 16)
        return row

    @staticmethod
    def keys(row: dict[str, Any]) -> list[str]:
        return [k for k in (row["original_path"], row["proxy_path"], row["thumbnail_path"]) if k]

    def object_exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.ClientError:
            return False
        return True


@pytest.fixture
def catalog(engine: Engine, s3, bucket: str, clean: None) -> Catalog:
    return Catalog(engine=engine, s3=s3, bucket=bucket)
