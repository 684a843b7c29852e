"""The command line wires the handlers' dependencies once, parses its values in one
place, and stops the children it supervises."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, Field

from worker.ops import cli, supervisor
from worker.ops.arguments import byte_size, call_value, duration, human_size


def test_every_command_path_of_one_invocation_shares_one_wiring(monkeypatch):
    built = []
    monkeypatch.setitem(sys.modules, "worker.runtime.app", SimpleNamespace(celery_enqueue=None))
    monkeypatch.setattr(
        "worker.bootstrap.build_deps", lambda settings, enqueue: built.append(1) or object()
    )
    wiring = cli.Wiring()

    assert built == []  # nothing is wired until a command needs it
    first, second = wiring(), wiring()

    assert first is second and built == [1]


class KeepDays(BaseModel):
    days: int = Field(ge=1)


def test_a_refused_command_is_one_line_before_anything_is_wired():
    def never() -> object:
        raise AssertionError("wired")

    with pytest.raises(cli.CommandFailed, match="^days: Input should be greater than or equal"):
        cli._handled(never, lambda cmd, deps: None, KeepDays, days=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)), ("30", timedelta(seconds=30))],
)
def test_durations(text, expected):
    assert duration(text) == expected


def test_sizes_read_and_print_in_the_same_units():
    assert human_size(byte_size("500G")) == "500G"
    assert human_size(byte_size("1.5K")) == "1536 bytes"
    with pytest.raises(argparse.ArgumentTypeError):
        byte_size("lots")
    assert cli.byte_size is byte_size


def test_call_values_are_json_when_they_parse():
    assert [call_value("2"), call_value("true"), call_value("abc")] == [2, True, "abc"]


def test_a_supervised_child_gets_a_warm_shutdown():
    child = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )

    supervisor._stop_children([child])

    assert child.returncode == -15


def test_the_printed_broker_url_hides_its_password():
    assert supervisor.redact("redis://:secret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
