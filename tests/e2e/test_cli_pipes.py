"""``videoworker call`` against a real worker, as a shell uses it: options among the
kwargs, and its answer piped into a reader that stops early (``| head -3``)."""

from __future__ import annotations

import json

from tests.support import run_cli
from tests.terminal import into_closed_pipe


def test_call_takes_the_timeout_among_its_kwargs(services, catalog, worker_process):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for _ in range(2):
        catalog.video(mall, pin)

    result = run_cli("call", "videos.list", "--timeout", "20", "page_size=1", env=services)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (len(data["videos"]), data["total"]) == (1, 2)


def test_call_into_a_pipe_whose_reader_left_ends_quietly(services, catalog, worker_process):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for _ in range(3):
        catalog.video(mall, pin)

    result = into_closed_pipe("call", "videos.list", "page_size=3", env=services)

    assert result.returncode in (0, 141)
    assert result.stderr == ""
