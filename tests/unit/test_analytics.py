"""Analytics on fakes: each signing path counts once per message, nothing when the
buffer is off or down, the flush folds exactly once (a flush that died after setting the
buffer aside, a fold applied twice), the access logs counted once per object, and
videos.analytics over the caller's scope with every day of the range."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, date, timedelta

import pytest
from pydantic import ValidationError

from handlers.access import Scope
from handlers.analytics import LogParser, analytics, flush_analytics, ingest_access_logs
from handlers.catalog import list_videos
from handlers.ports import Tally
from handlers.sharing import create_share, resolve_share
from handlers.urls import sign_url, sign_urls
from schemas.requests import (
    CreateShare,
    FlushAnalytics,
    GetAnalytics,
    IngestAccessLogs,
    ListVideos,
    ResolveShare,
    SignUrl,
    SignUrls,
)
from tests.support import poll
from tests.unit.fakes import T0, Fakes, make_video
from worker.adapters.analytics_buffer import Batched

TODAY = T0.date()


def flush(fakes: Fakes):
    return flush_analytics(FlushAnalytics(), fakes.deps)


def ask(fakes: Fakes, scope: Scope | None = None, **kw):
    deps = fakes.deps if scope is None else replace(fakes.deps, scope=scope)
    return analytics(GetAnalytics(**kw), deps)


def test_every_signing_path_counts_per_video_target_and_day_after_a_flush():
    fakes = Fakes()
    a, b = make_video(), make_video(thumbnail_path=None)
    fakes.add_videos(a, b)

    sign_url(SignUrl(video_id=a.id), fakes.deps)
    sign_url(SignUrl(video_id=a.id, target="original"), fakes.deps)
    sign_urls(SignUrls(video_ids=[a.id, b.id], target="thumbnail"), fakes.deps)
    list_videos(ListVideos(sign=["proxy", "thumbnail"]), fakes.deps)
    share = create_share(CreateShare(video_ids=[a.id, b.id]), fakes.deps)
    resolve_share(ResolveShare(token=share.token), fakes.deps)
    assert fakes.analytics_buffer.adds == 5  # one write per message
    assert fakes.uow.analytics.rows == {}

    result = flush(fakes)

    assert (result.folded, result.skipped) == (1, 0)
    got = ask(fakes, top=5)
    assert got.days[-1].day == TODAY and len(got.days) == 30
    assert got.days[-1].stream_urls == 2 + 2 + 2  # sign_url x2, list, resolve
    assert got.days[-1].thumbnail_urls == 1 + 1 + 1  # b has none: not counted
    assert got.days[-1].share_views == 2
    top = {t.video_id: t.stream_urls for t in got.top_videos}
    assert top == {a.id: 4, b.id: 2}
    assert got.totals.stream_urls == 6


def test_analytics_off_or_down_never_fails_a_signing_and_counts_nothing():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    fakes.analytics_buffer.down = True
    assert sign_url(SignUrl(video_id=video.id), fakes.deps).url
    off = replace(fakes.deps, analytics_buffer=None)
    assert sign_url(SignUrl(video_id=video.id), off).url
    assert fakes.analytics_buffer.adds == 1
    assert flush(fakes).counts == 0
    assert flush_analytics(FlushAnalytics(), off).folded == 0


def test_a_flush_that_died_after_setting_the_buffer_aside_is_folded_once_by_the_next():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    for _ in range(3):
        sign_url(SignUrl(video_id=video.id), fakes.deps)

    fakes.analytics_buffer.take()  # the dead flush: renamed, then gone
    sign_url(SignUrl(video_id=video.id), fakes.deps)
    result = flush(fakes)

    assert (result.folded, result.counts) == (2, 4)
    assert ask(fakes).totals.stream_urls == 4
    assert fakes.analytics_buffer.flushes == {}


def test_a_fold_applied_twice_counts_once():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    sign_url(SignUrl(video_id=video.id), fakes.deps)
    buffer = fakes.analytics_buffer
    (flush_id,) = buffer.take()
    tallies = buffer.read(flush_id)

    # A flush that committed its fold and died before dropping the key.
    with fakes.uow() as uow:
        assert uow.analytics.fold(flush_id, T0, tallies)
        uow.commit()
    result = flush(fakes)

    assert (result.folded, result.skipped) == (0, 1)
    assert ask(fakes).totals.stream_urls == 1
    assert buffer.flushes == {}


def test_flush_records_are_pruned_after_a_day():
    fakes = Fakes()
    with fakes.uow() as uow:
        uow.analytics.fold("old", T0 - timedelta(days=2), [])
        uow.commit()
    flush(fakes)
    assert "old" not in fakes.uow.analytics.flushes


def test_analytics_sees_the_callers_malls_or_pins_and_keeps_deleted_videos():
    fakes = Fakes()
    mine, theirs = make_video(), make_video()
    fakes.add_videos(mine, theirs)
    for video in (mine, theirs, theirs):
        sign_url(SignUrl(video_id=video.id), fakes.deps)
    flush(fakes)
    del fakes.uow.videos.rows[mine.id]

    operator = ask(fakes, Scope.operator([mine.mall_id]))
    tenant = ask(fakes, Scope.tenant([theirs.pin_id]))
    nobody = ask(fakes, Scope.tenant([uuid.uuid4()]))

    assert operator.totals.stream_urls == 1
    assert operator.top_videos[0].original_filename is None
    assert tenant.totals.stream_urls == 2
    assert tenant.top_videos[0].original_filename == theirs.original_filename
    assert nobody.totals.stream_urls == 0 and nobody.top_videos == []
    assert ask(fakes, mall_id=str(theirs.mall_id)).totals.stream_urls == 2
    assert ask(fakes, video_id=str(mine.id)).totals.stream_urls == 1


def test_the_range_defaults_to_30_days_and_is_bounded():
    fakes = Fakes()
    got = ask(fakes, from_day="2025-01-01", to_day="2025-01-03", top=0)
    assert [d.day for d in got.days] == [date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)]
    assert ask(fakes, from_day="2025-01-01").days[-1].day == date(2025, 1, 30)
    assert ask(fakes, to_day="2025-01-30").days[0].day == date(2025, 1, 1)
    assert len(ask(fakes, from_day="2024-01-01", to_day="2024-12-31").days) == 366
    for bad in (
        {"from_day": "2024-01-01", "to_day": "2025-01-01"},
        {"from_day": "2025-01-02", "to_day": "2025-01-01"},
        {"from_day": 20250101},
        {"from_day": "2025-01-01T00:00:00Z"},
        {"top": 101},
    ):
        with pytest.raises(ValidationError):
            GetAnalytics(**bad)


def log_line(
    key: str,
    status: str = "200",
    sent: str = "1000",
    op: str = "REST.GET.OBJECT",
    when: str = "31/Oct/2025:23:59:59 +0000",
) -> bytes:
    return (
        f"79a5 bucket [{when}] 192.0.2.3 - 3E57427F3EXAMPLE {op} {key} "
        f'"GET /bucket/{key} HTTP/1.1" {status} - {sent} 5000 70 10 "-" '
        f'"curl/8.0 (x y)" - Ex= SigV4 ECDHE TLSv1.3 AuthHeader bucket.s3.amazonaws.com TLSv1.2\n'
    ).encode()


def test_access_logs_count_served_gets_once_per_object():
    fakes = Fakes()
    video = make_video(proxy_path="videos/m/proxy/a b.mp4")
    fakes.add_videos(video)
    proxy = "videos/m/proxy/a%20b.mp4"
    body = b"".join(
        [
            log_line(proxy, "200", "1000"),
            log_line(proxy, "206", "500", when="01/Nov/2025:01:00:00 +0200"),
            log_line(proxy, "304", "0"),
            log_line(proxy, "403", "300"),
            log_line(proxy, "200", "70", op="REST.HEAD.OBJECT"),
            log_line("not/a/video.mp4", "200", "9"),
            b"garbage line\n",
            b"a b [bad] x\n",
        ]
    )
    fakes.access_logs.put("logs/2025-10-31-00-00-00-A", body)

    first = ingest_access_logs(IngestAccessLogs(), fakes.deps)
    second = ingest_access_logs(IngestAccessLogs(), fakes.deps)

    assert (first.objects, first.lines, first.garbage_lines, first.bytes_counted) == (1, 8, 2, 1500)
    assert second.objects == 0
    got = ask(fakes, from_day="2025-10-30", to_day="2025-10-31")
    assert [d.bytes_served for d in got.days] == [0, 1500]  # 01:00+02:00 is Oct 31 UTC


def test_a_flush_and_a_log_ingest_each_sum_the_spans_ended_by_todays_utc_date():
    fakes = Fakes()
    fakes.access_logs.put("logs/a", b"garbage line\n")
    spans = fakes.uow.analytics.spans_closed

    flush(fakes)
    ingest_access_logs(IngestAccessLogs(), fakes.deps)
    off = replace(fakes.deps, analytics_buffer=None, access_logs=None)
    flush_analytics(FlushAnalytics(), off)
    ingest_access_logs(IngestAccessLogs(), off)

    assert spans == [T0.astimezone(UTC).date()] * 2


def test_the_parser_takes_timezones_and_rejects_shapes():
    parser = LogParser()
    assert parser.parse(log_line("k", when="01/Jan/2026:00:30:00 +0100"))[0] == date(2025, 12, 31)
    assert parser.parse(log_line("k", when="31/Dec/2025:23:30:00 -0100"))[0] == date(2026, 1, 1)
    assert parser.parse(log_line("k", sent="-"))[2] == 0
    assert parser.parse(log_line("k", when="31/Foo/2025:23:30:00 +0000")) is None
    assert parser.parse(b"\n") is None
    assert (parser.lines, parser.garbage) == (4, 1)


def test_the_redis_buffer_down_loses_counts_quietly_and_says_so_once_a_minute(caplog):
    import redis

    from worker.adapters.analytics_buffer import RedisAnalyticsBuffer

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    buffer = RedisAnalyticsBuffer(down)
    tally = Tally(TODAY, uuid.uuid4(), uuid.uuid4(), None, "proxy", 2)
    with caplog.at_level("WARNING", logger="videoworker.analytics"):
        for _ in range(3):
            buffer.add([tally])
    assert buffer.skipped == 6
    assert [r.message for r in caplog.records] == ["analytics.buffer_unavailable"]


class RecordingBuffer:
    def __init__(self) -> None:
        self.added: list[list[Tally]] = []

    def add(self, tallies) -> None:
        self.added.append(list(tallies))


def test_a_workers_counts_are_added_up_and_written_by_its_thread_then_at_its_stop():
    video, mall = uuid.uuid4(), uuid.uuid4()
    proxy = Tally(T0.date(), video, mall, None, "proxy", 1)
    thumbnail = Tally(T0.date(), video, mall, None, "thumbnail", 2)

    # Two messages on two threads, held (no write in the hour): one write of their sum.
    held = RecordingBuffer()
    buffer = Batched(held, interval=3600)  # type: ignore[arg-type]
    other = threading.Thread(target=lambda: buffer.add([proxy, thumbnail]))
    other.start()
    other.join()
    buffer.add([proxy])
    assert held.added == []
    buffer.send()
    assert sorted(held.added[0], key=lambda t: t.target) == [replace(proxy, count=2), thumbnail]
    buffer.add([thumbnail])
    buffer.stop()  # a warm shutdown writes what is held
    assert held.added[-1] == [thumbnail]
    buffer.stop()  # nothing held: nothing written
    assert len(held.added) == 2

    # Left alone, the process's thread writes within its interval.
    timed = RecordingBuffer()
    ticking = Batched(timed, interval=0.05)  # type: ignore[arg-type]
    ticking.add([proxy])
    assert poll(lambda: timed.added, timeout=10, message="the thread's write") == [[proxy]]
    ticking.stop()
