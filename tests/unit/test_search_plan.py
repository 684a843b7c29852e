"""How a search reads ``video_search``: the trigrams the index is asked for, and whether
the table is read in one scan, from a sample of the text (``search_plan``)."""

from __future__ import annotations

import itertools

import pytest

from worker.adapters.postgres.rooms import search_plan
from worker.adapters.postgres.rooms.search_plan import TextSample, sample_for

# A sample as the recorders' names make one: every text holds "202" and "entrance",
# few hold "0907", one holds the hour asked for.
TEXTS = (
    *(
        f"20260{m}0{d}_1{h}0000_entrance.mp4"
        for m, d, h in itertools.product("12345", "12345", "0123")
    ),
    "20260907_140000_lobby.mp4\x01shoplifting at the entrance",
)


def test_the_rarest_piece_of_letters_and_digits_is_asked_for_as_written():
    sample = TextSample(TEXTS, rows=10_000_000)

    # "609", "090" and "907" are in one text at most; "202", "026", "260" in all.
    assert sample.rarest("20260907_14") == ("60907",)
    assert sample.rarest("EnTrance") == ("EnTra",)  # ties keep q's order
    assert sample.rarest("lobby") == ("lobby",)
    assert sample.rarest("IMG") == ("IMG",)
    assert sample.rarest("a_b-c de") == ()  # no run of three: the whole pattern is used
    assert sample.rarest("Straße 5") == ("Stra",)  # "ß" is not ASCII


def test_few_expected_matches_read_the_whole_table_many_read_by_period():
    sample = TextSample(TEXTS, rows=10_000_000)

    # One text in 101 holds the hour: ~99,000 expected at 10M, past a cap of 10,000.
    assert sample.expected("20260907_14") == pytest.approx(10_000_000 / len(TEXTS))
    assert sample.plan("20260907_14", cap=10_000).few is False
    assert sample.plan("20260907_14", cap=40_000).few is False
    assert sample.plan("20260907_14", cap=50_000).few is True  # up to twice the cap
    assert sample.plan("zzqx", cap=10_000).few is True
    assert sample.plan("ENTRANCE", cap=10_000).few is False
    assert TextSample((), rows=0).plan("entrance", cap=10_000).few is True


def test_the_tags_asked_for_count_as_the_index_keys_they_are():
    tags = tuple(frozenset({"reviewed"} if i % 10 == 0 else ()) for i in range(len(TEXTS)))
    sample = TextSample(TEXTS, rows=1_000_000, tags=tags)

    # All 101 texts hold "entrance": ~1M expected, ~100,000 of them tagged "reviewed".
    assert sample.plan("entrance", cap=10_000).few is False
    assert sample.expected("entrance", ["Reviewed"]) == pytest.approx(11 * 1_000_000 / 101)
    assert sample.plan("entrance", cap=100_000, tags=["REVIEWED"]).few is True
    assert sample.plan("entrance", cap=10_000, tags=["reviewed", "incident"]).few is True


def test_a_sample_is_kept_per_database_until_it_is_old(monkeypatch):
    search_plan.forget_samples()
    now = [1000.0]
    monkeypatch.setattr(search_plan.time, "monotonic", lambda: now[0])
    taken = []

    def load(name: str):
        def take() -> TextSample:
            taken.append(name)
            return TextSample((name,), rows=1)

        return take

    assert sample_for("a", load("a")).texts == ("a",)
    assert sample_for("a", load("a")).texts == ("a",)
    assert sample_for("b", load("b")).texts == ("b",)
    now[0] += search_plan.SAMPLE_SECONDS + 1
    sample_for("a", load("a"))
    assert taken == ["a", "b", "a"]
    search_plan.forget_samples()


def test_the_counts_a_sample_keeps_are_bounded(monkeypatch):
    monkeypatch.setattr(search_plan, "COUNTS_KEPT", 3)
    sample = TextSample(("abcdef",), rows=1)
    for needle in ("abc", "bcd", "cde", "xyz", "def"):
        assert sample.holding(needle) == (needle != "xyz")
    assert len(sample._counts) <= 3  # noqa: SLF001 - the bound is the point
