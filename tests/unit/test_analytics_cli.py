"""``videoworker analytics``: the request it sends and the table and bars it prints."""

from __future__ import annotations

import uuid
from datetime import date

from worker.ops.analytics import bar, render, request_of
from worker.ops.cli import build_parser


def test_days_count_back_from_today_and_filters_are_sent_as_text():
    mall = uuid.uuid4()
    args = build_parser().parse_args(["analytics", "--mall", str(mall), "--days", "7"])
    assert request_of(args, today=date(2026, 3, 1)) == {
        "top": 10,
        "mall_id": str(mall),
        "from_day": "2026-02-23",
        "to_day": "2026-03-01",
    }
    args = build_parser().parse_args(["analytics", "--from", "2026-01-01", "--to", "2026-01-31"])
    assert request_of(args)["from_day"] == "2026-01-01"


def test_the_table_has_a_bar_per_day_scaled_to_the_busiest():
    zero = {"stream_urls": 0, "thumbnail_urls": 0, "share_views": 0, "bytes_served": 0}
    data = {
        "days": [
            {**zero, "day": "2026-01-01", "stream_urls": 10, "bytes_served": 2_500_000},
            {**zero, "day": "2026-01-02"},
            {**zero, "day": "2026-01-03", "stream_urls": 5},
        ],
        "top_videos": [
            {
                "video_id": str(uuid.UUID(int=1)),
                "original_filename": None,
                "stream_urls": 15,
                "bytes_served": 0,
            }
        ],
        "totals": {**zero, "stream_urls": 15, "bytes_served": 2_500_000},
    }
    lines = render(data).splitlines()
    assert lines[1].endswith("#" * 40) and "2.5 MB" in lines[1]
    assert lines[2].endswith("B  ")
    assert lines[3].endswith("#" * 20)
    assert lines[4].startswith("total") and "15" in lines[4]
    assert lines[-1].endswith("(deleted)")
    assert bar(1, 1000) == "#" and bar(0, 10) == ""
