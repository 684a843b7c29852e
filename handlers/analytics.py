"""Analytics: signed URLs counted per video, target and UTC day, and bytes served.

The signing path must stay as cheap as it was: a handler that signed URLs hands its
counts to the ``AnalyticsBuffer`` port once per message (one pipelined write to Redis)
and never waits on PostgreSQL for it. ``videos.flush_analytics`` (beat) folds the
buffer into ``video_daily_analytics``: the buffer is first set aside under a flush id,
and the fold of that id and its record in ``analytics_flushes`` share one transaction,
so a flush that dies anywhere is finished by the next one, exactly once.

Bytes served are not known when a URL is signed (the client downloads from S3, not
through the worker): ``videos.ingest_access_logs`` reads them from S3's server access
logs, each log object once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import unquote
from uuid import UUID

from handlers.deps import Deps
from handlers.ports import (
    SHARE_VIEW,
    AnalyticsSelection,
    IngestedLog,
    LogObject,
    Served,
    Tally,
)
from schemas.requests import (
    ANALYTICS_DEFAULT_DAYS,
    FlushAnalytics,
    GetAnalytics,
    IngestAccessLogs,
)
from schemas.responses import (
    AccessLogIngestResult,
    AnalyticsDay,
    AnalyticsFigures,
    AnalyticsFlushResult,
    AnalyticsResult,
    TopVideo,
)

# A flush record only has to outlive the flush id it guards (a leftover is folded by the
# next flush, seconds later); a day is ample.
FLUSH_RECORD_TTL = timedelta(days=1)
# Distinct object keys looked up per query while ingesting a log object.
OWNER_BATCH = 1000
# Log objects read per run at most; the next run (five minutes later) goes on.
LOGS_PER_RUN = 500


# The signing path.
def utc_day(deps: Deps) -> date:
    return deps.clock().astimezone(UTC).date()


def count(deps: Deps, signed: Iterable[tuple[UUID, UUID, UUID | None, str]]) -> None:
    """Count what one message signed, (video, mall, pin, target) each, in one write."""
    buffer = deps.analytics_buffer
    if buffer is None:
        return
    day = utc_day(deps)
    counted = Counter(signed)
    if counted:
        buffer.add([Tally(day, v, m, p, t, n) for (v, m, p, t), n in counted.items()])


def urls_of(
    video_id: UUID, mall_id: UUID, pin_id: UUID | None, urls: dict[str, str | None]
) -> list[tuple[UUID, UUID, UUID | None, str]]:
    """The targets of a gallery item that were signed (a missing file is not)."""
    return [(video_id, mall_id, pin_id, t) for t, url in urls.items() if url is not None]


# The flush.
def flush_analytics(cmd: FlushAnalytics, deps: Deps) -> AnalyticsFlushResult:
    """Fold every flush id waiting (this run's and any a dead flush left) into
    PostgreSQL, each in a transaction that records it, then drop it from Redis. A fold
    already recorded is dropped without counting again."""
    buffer = deps.analytics_buffer
    if buffer is None:
        return AnalyticsFlushResult(folded=0, skipped=0, counts=0)
    folded = skipped = counts = 0
    now = deps.clock()
    for flush_id in buffer.take():
        tallies = buffer.read(flush_id)
        if tallies:
            with deps.uow() as uow:
                applied = uow.analytics.fold(flush_id, now, tallies)
                uow.commit()
            if applied:
                folded += 1
                counts += sum(t.count for t in tallies)
            else:
                skipped += 1
        buffer.drop(flush_id)
    with deps.uow() as uow:
        uow.analytics.prune_flushes(now - FLUSH_RECORD_TTL)
        uow.commit()
    close_spans(deps)
    if folded or skipped:
        deps.log.info(
            "analytics.flushed", extra={"folded": folded, "skipped": skipped, "counts": counts}
        )
    return AnalyticsFlushResult(folded=folded, skipped=skipped, counts=counts)


def close_spans(deps: Deps) -> None:
    """Once a day, the first flush or log ingest after midnight UTC sums the spans of days
    that ended, which a range's top videos read instead of a row per video and day
    (either task may be the only one running: counting off, or no access logs)."""
    with deps.uow() as uow:
        uow.analytics.close_spans(utc_day(deps))
        uow.commit()


# The access logs.
MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
GET_OBJECT = b"REST.GET.OBJECT"
SERVED_STATUSES = (b"200", b"206")


class LogParser:
    """S3 server access log lines: space-separated, ``[time]`` and ``"request-URI"``
    holding spaces, ``-`` for empty. Only what a served GET needs is decoded; a line
    that does not have the format's shape up to ``bytes_sent`` is garbage."""

    def __init__(self) -> None:
        self.lines = 0
        self.garbage = 0
        self._days: dict[bytes, date] = {}

    def day_of(self, stamp: bytes, zone: bytes) -> date:
        # ``06/Feb/2019:00:00:38`` and ``+0000``: cached per minute and zone.
        key = stamp[:17] + zone
        day = self._days.get(key)
        if day is None:
            sign = -1 if zone[:1] == b"-" else 1
            offset = timedelta(minutes=sign * (int(zone[1:3]) * 60 + int(zone[3:5])))
            moment = datetime(
                int(stamp[7:11]),
                MONTHS[stamp[3:6]],
                int(stamp[0:2]),
                int(stamp[12:14]),
                int(stamp[15:17]),
                tzinfo=timezone(offset),
            )
            day = self._days[key] = moment.astimezone(UTC).date()
        return day

    def parse(self, line: bytes) -> tuple[date, str, int] | None:
        """(UTC day, object key, bytes sent) of a served GET; None for any other line
        (garbage counted)."""
        line = line.rstrip(b"\r\n")
        if not line:
            return None
        self.lines += 1
        parts = line.split(b" ", 9)
        try:
            if len(parts) < 10 or parts[2][:1] != b"[" or parts[3][-1:] != b"]":
                raise ValueError
            rest = parts[9]
            if rest[:1] != b'"':
                raise ValueError
            end = rest.index(b'" ', 1)
            status, _error, sent = rest[end + 2 :].split(b" ", 3)[:3]
            if len(status) != 3 or not status.isdigit():
                raise ValueError
            if parts[7] != GET_OBJECT or status not in SERVED_STATUSES:
                return None
            day = self.day_of(parts[2][1:], parts[3][:-1])
            return day, unquote(parts[8].decode()), 0 if sent == b"-" else int(sent)
        except (ValueError, KeyError, UnicodeDecodeError):
            self.garbage += 1
            return None


def served_bytes(lines: Iterator[bytes]) -> tuple[LogParser, dict[tuple[date, str], int]]:
    """Bytes sent per (day, key) of a log object, streamed line by line."""
    parser = LogParser()
    sent: dict[tuple[date, str], int] = defaultdict(int)
    for line in lines:
        got = parser.parse(line)
        if got is not None:
            day, key, size = got
            sent[(day, key)] += size
    return parser, sent


def ingest_access_logs(cmd: IngestAccessLogs, deps: Deps) -> AccessLogIngestResult:
    """Each new log object (by key and ETag) read once: its bytes and its record are
    written in one transaction, so a run that dies re-reads that object, never adds it
    twice. A key no video names (deleted, or not a video's) is skipped."""
    logs = deps.access_logs
    totals = Counter[str]()
    if logs is None:
        return AccessLogIngestResult(objects=0, lines=0, garbage_lines=0, bytes_counted=0)
    listed: list[LogObject] = list(logs.objects())
    with deps.reads() as uow:
        seen = uow.analytics.seen_logs(listed)
    for obj in [o for o in listed if (o.key, o.etag) not in seen][:LOGS_PER_RUN]:
        parser, sent = served_bytes(logs.lines(obj.key))
        keys = sorted({key for _, key in sent})
        owners = {}
        with deps.reads() as uow:
            for start in range(0, len(keys), OWNER_BATCH):
                owners.update(uow.analytics.owners(keys[start : start + OWNER_BATCH]))
        served = [
            Served(day, owners[key], size)
            for (day, key), size in sent.items()
            if key in owners and size > 0
        ]
        counted = sum(s.bytes for s in served)
        record = IngestedLog(obj.key, obj.etag, parser.lines, counted, parser.garbage, deps.clock())
        with deps.uow() as uow:
            if not uow.analytics.ingest_log(record, served):
                continue
            uow.commit()
        totals.update(
            objects=1, lines=parser.lines, garbage_lines=parser.garbage, bytes_counted=counted
        )
        if parser.garbage:
            deps.log.warning(
                "analytics.access_log_garbage",
                extra={"key": obj.key, "garbage_lines": parser.garbage},
            )
    close_spans(deps)
    return AccessLogIngestResult(
        objects=totals["objects"],
        lines=totals["lines"],
        garbage_lines=totals["garbage_lines"],
        bytes_counted=totals["bytes_counted"],
    )


# The answer.
def selection_of(cmd: GetAnalytics, deps: Deps) -> AnalyticsSelection:
    """The days asked for; a side left out is taken from the other (30 days), or from
    today."""
    to_day, from_day = cmd.to_day, cmd.from_day
    span = timedelta(days=ANALYTICS_DEFAULT_DAYS - 1)
    if to_day is None:
        to_day = utc_day(deps) if from_day is None else from_day + span
    if from_day is None:
        from_day = to_day - span
    return AnalyticsSelection(cmd.mall_id, cmd.pin_id, cmd.video_id, from_day, to_day)


def analytics(cmd: GetAnalytics, deps: Deps) -> AnalyticsResult:
    """Every day of the range (zeros included), the top videos and the totals, over the
    rows the caller's scope sees."""
    selection = selection_of(cmd, deps)
    with deps.reads() as uow:
        daily = uow.analytics.daily(deps.scope, selection)
        top = uow.analytics.top(deps.scope, selection, cmd.top) if cmd.top else []
    days = []
    day = selection.from_day
    while day <= selection.to_day:
        figures = daily.get(day)
        days.append(
            AnalyticsDay(day=day)
            if figures is None
            else AnalyticsDay(
                day=day,
                stream_urls=figures.stream_urls,
                thumbnail_urls=figures.thumbnail_urls,
                share_views=figures.share_views,
                bytes_served=figures.bytes_served,
            )
        )
        day += timedelta(days=1)
    totals = AnalyticsFigures(
        stream_urls=sum(d.stream_urls for d in days),
        thumbnail_urls=sum(d.thumbnail_urls for d in days),
        share_views=sum(d.share_views for d in days),
        bytes_served=sum(d.bytes_served for d in days),
    )
    return AnalyticsResult(
        days=days,
        top_videos=[TopVideo.model_validate(row) for row in top],
        totals=totals,
    )


__all__ = ["SHARE_VIEW", "analytics", "count", "flush_analytics", "ingest_access_logs"]
