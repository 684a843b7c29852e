"""A typed caller for other Python services.

Long because it is one method per task of the contract, each typed with the task's own
answer model, so that a caller needs this one module (and ``schemas``) and nothing else.

It sends tasks by name (nothing of the worker's code runs in the caller), waits for
the envelope and returns the pydantic response, or raises a ``VideoWorkerError``
subclass carrying the envelope's code, status, detail and field errors::

    client = VideoClient("redis://redis:6379/0", "redis://redis:6379/1")
    video = client.get("7a0c…", timeout=5)
    url = client.sign_url(video.id, target="thumbnail").url

Against a worker with ``AUTH_MODE=jwt``, give the caller's token once
(``VideoClient(..., token=jwt)``) or per call (``client.get(video_id, token=jwt)``);
it travels as the ``auth`` kwarg of each task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal, TypeVar
from uuid import UUID

import redis
from celery import Celery
from celery.result import AsyncResult
from kombu import Connection as BrokerConnection
from kombu import Exchange, Queue
from pydantic import BaseModel

from schemas.contract import QUEUE_OF, QUEUES, QUORUM_QUEUE_ARGUMENTS, REQUESTS_QUEUE, is_amqp
from schemas.events import (
    EVENTS_EXCHANGE,
    EVENTS_STREAM,
    STREAM_EVENT_FIELD,
    STREAM_TYPE_FIELD,
    CloudEvent,
)
from schemas.responses import (
    BulkDeleteResult,
    ExportQueued,
    ExportState,
    PurgeResult,
    RefreshStatsResult,
    RestoreResult,
    RetentionSweepResult,
    SignUrlsResult,
    VideoDeleteResponse,
    VideoDetailResponse,
    VideoListResponse,
    VideoStats,
    VideoStreamUrlResponse,
)

Model = TypeVar("Model", bound=BaseModel)
# An export in one of these is done with: nothing about it changes any more.
EXPORT_FINAL = frozenset({"completed", "failed", "cancelled", "expired"})


def contract_queues(broker_url: str) -> list[Queue]:
    """The worker's two queues, declared exactly as the worker declares them.

    On RabbitMQ they are quorum queues, and a declaration with other arguments (a bare
    ``Queue("videos")``, which ``send_task(queue="videos")`` would make) is refused.
    """
    arguments = QUORUM_QUEUE_ARGUMENTS if is_amqp(broker_url) else None
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments)
        for name in QUEUES
    ]


class VideoWorkerError(Exception):
    """An error envelope from the worker."""

    def __init__(
        self, code: str, status: int, detail: str, fields: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{code} ({status}): {detail}")
        self.code = code
        self.status = status
        self.detail = detail
        self.fields = fields or []


class InvalidRequestError(VideoWorkerError):
    pass


class NotAvailableError(VideoWorkerError):
    pass


class NotFoundError(VideoWorkerError):
    pass


class UnavailableError(VideoWorkerError):
    pass


class InternalError(VideoWorkerError):
    pass


class UnauthorizedError(VideoWorkerError):
    """No valid token: missing, expired, badly signed, for another audience…"""


class ForbiddenError(VideoWorkerError):
    """The token's role may not run this task."""


ERRORS: dict[str, type[VideoWorkerError]] = {
    "invalid_request": InvalidRequestError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_available": NotAvailableError,
    "not_found": NotFoundError,
    "unavailable": UnavailableError,
    "internal": InternalError,
}


def raise_for_envelope(envelope: Any) -> dict[str, Any]:
    """The envelope's ``data``, or the typed error it describes."""
    if not isinstance(envelope, dict) or "ok" not in envelope:
        raise InternalError("internal", 500, f"Malformed reply from the worker: {envelope!r}"[:300])
    if envelope["ok"]:
        return envelope["data"]
    error = envelope.get("error") or {}
    code = error.get("code", "internal")
    raise ERRORS.get(code, VideoWorkerError)(
        code, envelope.get("status", 500), error.get("detail", ""), error.get("fields")
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return _jsonable(value)
    return value


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """UUIDs and datetimes as the contract's strings, at any depth (``video_ids``,
    ``filters``); a None is left out, which every optional kwarg reads as its default."""
    return {key: _json_value(value) for key, value in kwargs.items() if value is not None}


class VideoClient:
    def __init__(
        self,
        broker_url: str | None = None,
        backend_url: str | None = None,
        *,
        app: Celery | None = None,
        timeout: float = 10.0,
        signing: dict[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        """``signing`` = {"key": path, "cert": path, "store": glob} when the worker only
        accepts signed messages (Celery's ``auth`` serializer). ``token``: the JWT sent
        as ``auth`` with every task unless a call gives its own."""
        self.token = token
        if app is None:
            app = Celery("videoworker-client", broker=broker_url, backend=backend_url)
            app.conf.update(
                task_serializer="json",
                result_serializer="json",
                accept_content=["json"],
                result_accept_content=["json"],
                broker_connection_retry_on_startup=True,
                task_queues=contract_queues(broker_url or ""),
                task_create_missing_queues=False,
            )
            if is_amqp(broker_url or ""):
                # Quorum queues confirm each publish once a majority holds it.
                app.conf.broker_transport_options = {"confirm_publish": True}
            # Celery prefers CELERY_BROKER_URL / CELERY_RESULT_BACKEND from the environment
            # over the URLs given here; a calling service often sets those for its own
            # Celery app, so pin ours: producers use broker_write_url, and backend_cls
            # wins over the configured result backend.
            if broker_url:
                app.conf.broker_write_url = broker_url
            if backend_url:
                app.backend_cls = backend_url
            if signing:
                app.conf.update(
                    task_serializer="auth",
                    accept_content=["auth"],
                    security_key=signing["key"],
                    security_certificate=signing["cert"],
                    security_cert_store=signing["store"],
                    security_digest="sha256",
                )
                app.setup_security(allowed_serializers=["json"], serializer="json")
        self.app = app
        self.timeout = timeout

    def send(self, task: str, *, auth_token: str | None = None, **kwargs: Any) -> AsyncResult:
        """Send without waiting (fire-and-forget deletes from a pipeline, for instance).

        ``auth_token``: this call's JWT, else the client's. Every other keyword is the
        task's own, ``token`` included (``videos.share_resolve`` takes a share's)."""
        auth = auth_token or self.token
        if auth is not None and "auth" not in kwargs:
            kwargs["auth"] = auth
        queue = QUEUE_OF.get(task, REQUESTS_QUEUE)
        return self.app.send_task(task, kwargs=_jsonable(kwargs), queue=queue, routing_key=queue)

    def call(
        self,
        task: str,
        *,
        timeout: float | None = None,
        auth_token: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send, wait and return the raw envelope (``auth_token`` as for ``send``)."""
        result = self.send(task, auth_token=auth_token, **kwargs)
        try:
            return result.get(timeout=timeout or self.timeout, propagate=True)
        finally:
            result.forget()

    def _data(
        self,
        model: type[Model],
        task: str,
        timeout: float | None,
        *,
        token: str | None = None,
        **kwargs: Any,
    ) -> Model:
        # The typed methods' ``token`` is the JWT: none of their tasks has one of its own.
        envelope = self.call(task, timeout=timeout, auth_token=token, **kwargs)
        return model.model_validate(raise_for_envelope(envelope))

    # Each method takes ``token=`` (that call's JWT) besides its own arguments; ``list``,
    # ``retention_sweep`` and ``purge_storage`` pass it on with their other keywords.
    def list(self, *, timeout: float | None = None, **filters: Any) -> VideoListResponse:
        return self._data(VideoListResponse, "videos.list", timeout, **filters)

    def pages(self, *, timeout: float | None = None, **filters: Any) -> Iterator[VideoListResponse]:
        """Every page of a listing, first to last, each from the cursor of the one before:
        page 10,000 costs what page 1 does, and a video listed throughout is met once,
        whatever is uploaded or deleted meanwhile. ``page`` is not taken."""
        if "page" in filters or "cursor" in filters:
            raise TypeError("pages() starts at the first page and follows the cursors itself")
        cursor: str | None = None
        while True:
            page = self.list(timeout=timeout, **filters, **({"cursor": cursor} if cursor else {}))
            yield page
            cursor = page.next_cursor
            if cursor is None:
                return

    def get(
        self, video_id: UUID | str, *, timeout: float | None = None, token: str | None = None
    ) -> VideoDetailResponse:
        return self._data(
            VideoDetailResponse, "videos.get", timeout, token=token, video_id=video_id
        )

    def sign_url(
        self,
        video_id: UUID | str,
        target: str = "proxy",
        expires_minutes: int = 60,
        *,
        timeout: float | None = None,
        token: str | None = None,
    ) -> VideoStreamUrlResponse:
        return self._data(
            VideoStreamUrlResponse,
            "videos.sign_url",
            timeout,
            token=token,
            video_id=video_id,
            target=target,
            expires_minutes=expires_minutes,
        )

    def sign_urls(
        self,
        video_ids: list[UUID | str],
        target: str = "proxy",
        expires_minutes: int = 60,
        *,
        timeout: float | None = None,
        token: str | None = None,
    ) -> SignUrlsResult:
        return self._data(
            SignUrlsResult,
            "videos.sign_urls",
            timeout,
            token=token,
            video_ids=video_ids,
            target=target,
            expires_minutes=expires_minutes,
        )

    def delete(
        self,
        video_id: UUID | str,
        delete_files: bool = True,
        *,
        trash: bool = False,
        timeout: float | None = None,
        token: str | None = None,
    ) -> VideoDeleteResponse:
        return self._data(
            VideoDeleteResponse,
            "videos.delete",
            timeout,
            token=token,
            video_id=video_id,
            delete_files=delete_files,
            trash=trash,
        )

    def restore(
        self, video_id: UUID | str, *, timeout: float | None = None, token: str | None = None
    ) -> RestoreResult:
        return self._data(RestoreResult, "videos.restore", timeout, token=token, video_id=video_id)

    def bulk_delete(self, *, timeout: float | None = None, **options: Any) -> BulkDeleteResult:
        """``video_ids=[…]`` or ``filters={…}``, and ``trash``, ``dry_run``, ``batch_size``…"""
        return self._data(BulkDeleteResult, "videos.bulk_delete", timeout, **options)

    def stats(
        self,
        mall_id: UUID | str | None = None,
        *,
        pin_id: UUID | str | None = None,
        by_pin: bool = False,
        timeout: float | None = None,
        token: str | None = None,
    ) -> VideoStats:
        return self._data(
            VideoStats,
            "videos.stats",
            timeout,
            token=token,
            mall_id=mall_id,
            pin_id=pin_id,
            by_pin=by_pin,
        )

    def refresh_stats(
        self,
        mall_id: UUID | str | None = None,
        *,
        timeout: float | None = None,
        token: str | None = None,
    ) -> RefreshStatsResult:
        return self._data(
            RefreshStatsResult, "videos.refresh_stats", timeout, token=token, mall_id=mall_id
        )

    def retention_sweep(
        self, *, timeout: float | None = None, **options: Any
    ) -> RetentionSweepResult:
        return self._data(RetentionSweepResult, "videos.retention_sweep", timeout, **options)

    def purge_storage(self, *, timeout: float | None = None, **options: Any) -> PurgeResult:
        return self._data(PurgeResult, "videos.purge_storage", timeout, **options)

    def export(
        self,
        *,
        video_ids: Sequence[UUID | str] | None = None,
        filters: dict[str, Any] | None = None,
        target: str = "proxy",
        include_thumbnails: bool = False,
        name: str | None = None,
        timeout: float | None = None,
        token: str | None = None,
    ) -> ExportQueued:
        """Queue one ZIP of the videos (exactly one of ``video_ids`` or ``filters``); the
        answer comes before any byte is written: follow it with ``wait_for_export``."""
        return self._data(
            ExportQueued,
            "videos.export",
            timeout,
            token=token,
            video_ids=None if video_ids is None else list(video_ids),
            filters=filters,
            target=target,
            include_thumbnails=include_thumbnails,
            name=name,
        )

    def export_status(
        self,
        export_id: UUID | str,
        expires_minutes: int = 60,
        *,
        timeout: float | None = None,
        token: str | None = None,
    ) -> ExportState:
        return self._data(
            ExportState,
            "videos.export_status",
            timeout,
            token=token,
            export_id=export_id,
            expires_minutes=expires_minutes,
        )

    def export_cancel(
        self, export_id: UUID | str, *, timeout: float | None = None, token: str | None = None
    ) -> ExportState:
        return self._data(
            ExportState, "videos.export_cancel", timeout, token=token, export_id=export_id
        )

    def wait_for_export(
        self,
        export_id: UUID | str,
        *,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
        progress: Callable[[ExportState], None] | None = None,
        expires_minutes: int = 60,
        token: str | None = None,
    ) -> ExportState:
        """Poll ``export_status`` until the export is completed, failed, cancelled or
        expired, and return that state (a failure is an answer, not an exception: its
        ``error`` says why). ``progress`` sees every state polled, the last one too.
        Raises ``TimeoutError`` after ``timeout`` seconds; the export goes on regardless."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.export_status(export_id, expires_minutes, token=token)
            if progress is not None:
                progress(state)
            if state.status in EXPORT_FINAL:
                return state
            if deadline is not None and time.monotonic() + poll_seconds > deadline:
                raise TimeoutError(f"export {export_id} still {state.status} after {timeout:g}s")
            time.sleep(poll_seconds)

    def events(
        self,
        *,
        group: str,
        consumer: str = "consumer-1",
        types: Sequence[str] | None = None,
        block_ms: int = 5000,
        start: str = "$",
        via: Literal["stream", "exchange"] = "stream",
        url: str | None = None,
        stop_when_idle: bool = False,
    ) -> Iterator[CloudEvent]:
        """The worker's events, each acknowledged once the loop asks for the next.

        ``via="stream"`` reads ``videos:events`` on Redis (``url``, else the result
        backend's) as consumer ``consumer`` of the group ``group``, created at ``start``
        the first time (``$``: from now; ``0``: all that is kept). ``via="exchange"``
        (RabbitMQ) binds the durable queue named ``group`` to the exchange
        ``videos.events``. Either way an event not acknowledged (the loop broke, the
        process died) comes again, and one published while the subscriber was away waits
        for it; delivery is at least once, so deduplicate by ``event.id``. ``types``:
        patterns such as ``video.*``. ``stop_when_idle``: end after ``block_ms`` with
        nothing new.
        """
        if via == "exchange":
            yield from read_exchange(
                url or self.app.conf.broker_write_url or str(self.app.conf.broker_url),
                group,
                types,
                block_ms=block_ms,
                stop_when_idle=stop_when_idle,
            )
            return
        redis_url = url or str(self.app.conf.result_backend or "")
        yield from read_stream(
            redis_url,
            group=group,
            consumer=consumer,
            types=types,
            block_ms=block_ms,
            start=start,
            stop_when_idle=stop_when_idle,
        )

    def close(self) -> None:
        self.app.close()


def wanted(event_type: str, types: Sequence[str] | None) -> bool:
    return not types or any(fnmatchcase(event_type, pattern) for pattern in types)


def read_stream(
    redis_url: str,
    *,
    group: str | None,
    consumer: str = "consumer-1",
    types: Sequence[str] | None = None,
    block_ms: int = 5000,
    start: str = "$",
    stop_when_idle: bool = False,
    count: int = 100,
) -> Iterator[CloudEvent]:
    """``videos:events`` from Redis: with ``group``, through a consumer group (its own
    pending entries first, each acknowledged when the next is asked for); without, a
    plain XREAD from ``start`` that acknowledges nothing."""
    client = redis.Redis.from_url(redis_url, socket_timeout=block_ms / 1000 + 10)
    try:
        if group is None:
            last = start
            while True:
                reply = client.xread({EVENTS_STREAM: last}, count=count, block=block_ms)
                entries = reply[0][1] if reply else []
                if not entries and stop_when_idle:
                    return
                for entry_id, fields in entries:
                    last = entry_id
                    if fields and wanted(fields[STREAM_TYPE_FIELD.encode()].decode(), types):
                        yield CloudEvent.model_validate_json(fields[STREAM_EVENT_FIELD.encode()])
        try:
            client.xgroup_create(EVENTS_STREAM, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # "0": what this consumer was given and never acknowledged; then ">": new ones.
        cursor = "0"
        while True:
            reply = client.xreadgroup(
                group, consumer, {EVENTS_STREAM: cursor}, count=count, block=block_ms
            )
            entries = reply[0][1] if reply else []
            if not entries:
                if cursor == "0":
                    cursor = ">"
                    continue
                if stop_when_idle:
                    return
                continue
            for entry_id, fields in entries:
                # A pending entry trimmed away since comes back without its fields.
                if fields and wanted(fields[STREAM_TYPE_FIELD.encode()].decode(), types):
                    yield CloudEvent.model_validate_json(fields[STREAM_EVENT_FIELD.encode()])
                client.xack(EVENTS_STREAM, group, entry_id)
    finally:
        client.close()


def bind_queue(channel: Any, queue: str, types: Sequence[str] | None = None) -> Queue:
    """Declare the durable queue ``queue`` bound to ``videos.events`` with each of
    ``types``: from then on it keeps every matching event until it is read."""
    exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True, auto_delete=False)
    keys = list(types) if types else ["#"]
    exchange(channel).declare()
    bound = Queue(queue, exchange, routing_key=keys[0], durable=True, auto_delete=False)(channel)
    bound.declare()
    for key in keys[1:]:
        bound.bind_to(exchange=EVENTS_EXCHANGE, routing_key=key)
    return bound


def read_exchange(
    broker_url: str,
    queue: str,
    types: Sequence[str] | None = None,
    *,
    block_ms: int = 5000,
    stop_when_idle: bool = False,
) -> Iterator[CloudEvent]:
    """The exchange ``videos.events`` on RabbitMQ, through the durable queue ``queue``
    bound with each of ``types`` (topic patterns: ``video.*``; none: ``#``)."""
    with BrokerConnection(broker_url) as connection:
        channel = connection.channel()
        bound = bind_queue(channel, queue, types)
        idle_since = None
        while True:
            message = bound.get(no_ack=False)
            if message is None:
                now = time.monotonic()
                idle_since = idle_since or now
                if stop_when_idle and now - idle_since >= block_ms / 1000:
                    return
                time.sleep(0.05)
                continue
            idle_since = None
            yield CloudEvent.model_validate_json(message.body)
            message.ack()
