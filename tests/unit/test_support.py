"""The suites' shared waiting and CLI helpers (``tests/support.py``)."""

from __future__ import annotations

import time

import pytest

from tests.support import poll, run_cli


def test_poll_returns_the_first_truthy_value():
    answers = iter([0, None, "", "ready", "later"])

    assert poll(lambda: next(answers), timeout=5, interval=0) == "ready"
    assert next(answers) == "later"


def test_poll_fails_with_the_message_of_the_last_state_seen():
    seen: list[int] = []

    def never() -> bool:
        seen.append(len(seen))
        return False

    with pytest.raises(AssertionError) as failure:
        poll(never, timeout=0.2, interval=0.01, message=lambda: f"a miracle; tries: {len(seen)}")

    assert str(failure.value) == f"timed out after 0.2s waiting for a miracle; tries: {len(seen)}"
    assert len(seen) > 2


def test_poll_names_the_predicate_when_given_no_message():
    def queue_is_empty() -> bool:
        return False

    with pytest.raises(AssertionError, match="waiting for .*queue_is_empty"):
        poll(queue_is_empty, timeout=0.05, interval=0.01)


def test_poll_checks_once_more_at_the_deadline_however_long_the_interval():
    calls: list[float] = []

    def second_call_succeeds() -> bool:
        calls.append(time.monotonic())
        return len(calls) == 2

    started = time.monotonic()
    assert poll(second_call_succeeds, timeout=0.2, interval=60) is True

    assert len(calls) == 2
    assert 0.2 <= calls[1] - started < 5


def test_poll_ends_at_once_when_the_predicate_raises():
    def worker_exited() -> bool:
        raise RuntimeError("worker exited with 1")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="worker exited"):
        poll(worker_exited, timeout=30)

    assert time.monotonic() - started < 5


def test_run_cli_runs_the_videoworker_command():
    result = run_cli("--help", check=0)

    assert result.stdout.startswith("usage: videoworker")
    assert "dead-letters" in result.stdout


def test_run_cli_check_shows_the_output_of_an_unexpected_exit():
    assert run_cli("no-such-command").returncode == 2
    with pytest.raises(AssertionError) as failure:
        run_cli("no-such-command", check=0)

    assert "exited 2, not 0" in str(failure.value)
    assert "invalid choice: 'no-such-command'" in str(failure.value)
