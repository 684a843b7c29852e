"""Settings: errors name the environment variable, URLs are normalised."""

from __future__ import annotations

import pytest

from worker.settings import DEFAULT_DB_POOL_SIZE, ConfigError, load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_DAYS", "0"),
        ("RETENTION_DAYS", "ninety"),
        ("DATABASE_URL", "mysql://root@localhost/videos"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("CELERY_BROKER_URL", "kafka://broker:9092"),
        ("S3_ENDPOINT_URL", "ftp://minio:9000"),
        ("S3_PUBLIC_ENDPOINT_URL", "minio.example.com"),
        ("DB_POOL_SIZE", "-1"),
        ("S3_READ_TIMEOUT_SECONDS", "0"),
        ("SEARCH_QUEUE", "videos"),
    ],
)
def test_a_bad_environment_variable_is_named_in_the_error(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert str(raised.value).startswith("Invalid configuration: ")
    assert f"{variable}: " in str(raised.value)


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(ConfigError) as raised:
        load_settings(retention_days=0, database_url="sqlite:///videos.db")

    assert "RETENTION_DAYS: " in str(raised.value)
    assert "DATABASE_URL: must be a postgresql+psycopg:// URL" in str(raised.value).replace(
        "Value error, ", ""
    )


def test_retention_days_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("RETENTION_DAYS", "30")

    assert load_settings().retention_days == 30


def test_plain_postgresql_scheme_means_psycopg():
    settings = load_settings(database_url="postgresql://u:p@db:5432/videos")

    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/videos"


def test_s3_urls_lose_a_trailing_slash_and_an_empty_public_url_means_none():
    settings = load_settings(
        s3_endpoint_url="http://minio:9000/", s3_public_endpoint_url="", aws_region="eu-west-1"
    )

    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_public_endpoint_url is None
    assert settings.aws_region == "eu-west-1"


def test_cache_and_result_backend_default_to_the_redis_broker():
    settings = load_settings(
        celery_broker_url="redis://broker:6379/1", redis_url="", celery_result_backend=""
    )

    assert settings.redis_cache_url == "redis://broker:6379/1"
    assert settings.result_backend_url == "redis://broker:6379/1"


def test_the_secret_key_is_not_shown_in_the_settings_repr():
    settings = load_settings(aws_secret_access_key="do-not-print-me")

    assert "do-not-print-me" not in repr(settings)
    assert settings.aws_secret_access_key.get_secret_value() == "do-not-print-me"


@pytest.mark.parametrize(
    ("url", "guarded", "tls"),
    [
        ("redis://127.0.0.1:6379/0", "worker.runtime.transport.Transport", False),
        (
            "rediss://cache.example:6380/0?ssl_cert_reqs=required",
            "worker.runtime.transport.Transport",
            True,
        ),
        ("amqp://guest:guest@127.0.0.1:5672//", "worker.runtime.amqp_transport.Transport", False),
        ("pyamqp://guest:guest@127.0.0.1//", "worker.runtime.amqp_transport.Transport", False),
        ("amqps://guest:guest@mq.example//", "worker.runtime.amqp_transport.SSLTransport", True),
    ],
)
def test_every_broker_scheme_gets_its_guarded_transport_and_keeps_its_tls(url, guarded, tls):
    from kombu import Connection

    from worker.settings import broker_transport

    settings = load_settings(celery_broker_url=url)
    connection = Connection(settings.celery_broker_url, transport=broker_transport(url))
    transport = connection.transport
    assert f"{type(transport).__module__}.{type(transport).__qualname__}" == guarded
    assert bool(connection.ssl) is tls
    if url.startswith("amqps"):
        assert transport.default_connection_params["port"] == 5671


@pytest.mark.parametrize(
    "url", ["sentinel://127.0.0.1:26379", "memory://", "unix:///run/redis.sock"]
)
def test_a_broker_scheme_the_worker_cannot_guard_is_refused_with_a_sentence(url):
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL: .*guards against hostile messages"):
        load_settings(celery_broker_url=url)


@pytest.mark.parametrize(
    ("pool", "concurrency", "size"),
    [
        ("prefork", 8, 1),
        ("processes", 4, 1),
        ("solo", 1, 1),
        ("threads", 12, 12),
        ("threads", 0, 1),
    ],
)
def test_a_worker_sizes_its_database_pool_from_its_execution_pool(pool, concurrency, size):
    """A prefork child runs one task at a time; each of T threads may hold a connection."""
    settings = load_settings().for_worker(pool, concurrency)
    assert settings.db_pool_size == size
    assert settings.pool_size == size


def test_db_pool_size_given_wins_and_processes_that_are_not_workers_keep_the_default():
    given = load_settings(db_pool_size=3)
    assert given.for_worker("threads", 16).pool_size == 3
    assert given.for_worker("prefork", 16).pool_size == 3
    assert load_settings().db_pool_size is None
    assert load_settings().pool_size == DEFAULT_DB_POOL_SIZE


@pytest.mark.parametrize(("value", "queue"), [("", None), ("videos.search", "videos.search")])
def test_searches_are_handed_over_only_when_search_queue_names_the_queue(monkeypatch, value, queue):
    monkeypatch.setenv("SEARCH_QUEUE", value)

    assert load_settings().search_queue == queue
