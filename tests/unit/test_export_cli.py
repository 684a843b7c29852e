"""``videoworker export``: its arguments, and the wait loop on a client that answers from
a script of states (the real ``VideoClient.wait_for_export`` polling a fake status)."""

from __future__ import annotations

import io
import uuid

import pytest

from schemas.responses import ExportQueued, ExportState
from worker.client import NotFoundError, VideoClient
from worker.ops import export as cli

EXPORT = uuid.uuid4()
URL = "https://s3.example/exports/dock.zip?X-Amz-Signature=abc"


def parse(*argv: str):
    return cli.build_parser_for_tests().parse_args(list(argv))


def state(status: str, done: int = 0, written: int = 0, **extra) -> ExportState:
    return ExportState(
        export_id=EXPORT,
        status=status,
        videos=2,
        done=done,
        bytes_written=written,
        url=extra.get("url"),
        expires_at=None,
        error=extra.get("error"),
    )


class ScriptedClient(VideoClient):
    """Answers ``export`` at once and each ``export_status`` with the next state."""

    def __init__(self, states: list[ExportState | BaseException]) -> None:
        self.states = list(states)
        self.sent: list[tuple[str, dict]] = []

    def export(self, **kwargs) -> ExportQueued:
        self.sent.append(("videos.export", kwargs))
        return ExportQueued(export_id=EXPORT, status="queued", videos=2, bytes_estimated=10)

    def export_status(self, export_id, expires_minutes=60, **_) -> ExportState:
        self.sent.append(("videos.export_status", {"export_id": str(export_id)}))
        answer = self.states.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def export_cancel(self, export_id, **_):  # pragma: no cover - must never be called
        raise AssertionError("waiting must never cancel")


def waited(client: ScriptedClient, *argv: str, terminal: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = parse(*argv, "--wait", "--poll", "0")
    code = cli.run(args, client, out, err, force_terminal=terminal)
    return code, out.getvalue(), err.getvalue()


def test_ids_are_sent_as_video_ids_and_flags_as_the_contract_names_them():
    a, b = uuid.uuid4(), uuid.uuid4()
    args = parse(str(a), str(b), str(a), "--target", "original", "--thumbnails", "--name", "dock")

    assert cli.selection_error(args) is None
    assert cli.request_of(args) == {
        "video_ids": [str(a), str(b)],
        "target": "original",
        "include_thumbnails": True,
        "name": "dock",
    }


def test_filters_are_sent_as_filters_with_only_what_was_given():
    mall = uuid.uuid4()
    args = parse("--mall", str(mall), "--status", "completed", "--tag", "night", "--tag", "dock")

    assert cli.request_of(args) == {
        "filters": {
            "mall_id": str(mall),
            "processing_status": "completed",
            "tags": ["night", "dock"],
        },
        "target": "proxy",
        "include_thumbnails": False,
        "name": None,
    }


@pytest.mark.parametrize(
    ("argv", "problem"),
    [((), "name what to export"), ((str(uuid.uuid4()), "--mall", str(uuid.uuid4())), "not both")],
)
def test_no_selection_or_two_at_once_is_refused(argv, problem):
    assert problem in cli.selection_error(parse(*argv))


def test_a_bad_target_or_id_is_refused_by_the_parser():
    for argv in (("--target", "thumbnail"), ("not-a-uuid",)):
        with pytest.raises(SystemExit):
            parse(*argv)


def test_without_wait_only_the_id_is_printed_and_nothing_is_polled():
    client = ScriptedClient([])
    out = io.StringIO()

    code = cli.run(parse("--mall", str(uuid.uuid4())), client, out, io.StringIO())

    assert (code, out.getvalue()) == (0, f"{EXPORT}\n")
    assert [task for task, _ in client.sent] == ["videos.export"]


def test_waiting_prints_a_line_per_change_off_a_terminal_then_the_url():
    client = ScriptedClient(
        [
            state("queued"),
            state("running", 1, 8 * 1024**2),
            state("running", 1, 8 * 1024**2),
            state("completed", 3, 9 * 1024**2, url=URL),
        ]
    )

    code, out, err = waited(client, "--mall", str(uuid.uuid4()))

    assert (code, out) == (0, f"{EXPORT}\n{URL}\n")
    assert err.splitlines() == [
        f"export {EXPORT}: queued, 0/3 files, 0 B written",
        f"export {EXPORT}: running, 1/3 files, 8.0 MiB written",
        f"export {EXPORT}: completed, 3/3 files, 9.0 MiB written",
    ]


def test_at_a_terminal_a_bar_is_drawn_instead_of_lines():
    client = ScriptedClient([state("running", 1, 10), state("completed", 3, 20, url=URL)])

    code, out, err = waited(client, "--mall", str(uuid.uuid4()), terminal=True)

    assert code == 0 and out.endswith(f"{URL}\n")
    assert "export completed (2 videos)" in err and "files," not in err


@pytest.mark.parametrize(
    ("final", "sentence"),
    [
        (
            state("failed", error="S3 failed while the ZIP was written (x); export again"),
            "S3 failed",
        ),
        (state("cancelled", error="Export cancelled."), "Export cancelled."),
    ],
)
def test_a_failed_or_cancelled_export_says_its_sentence_and_exits_1(final, sentence):
    code, out, err = waited(ScriptedClient([state("running"), final]), "--mall", str(uuid.uuid4()))

    assert (code, out) == (1, f"{EXPORT}\n")
    assert sentence in final.error
    assert err.splitlines()[-1] == f"videoworker export: {final.error}"


def test_ctrl_c_while_waiting_says_the_export_goes_on_and_how_to_cancel_it():
    client = ScriptedClient([state("running", 1, 10), KeyboardInterrupt()])

    code, out, err = waited(client, "--mall", str(uuid.uuid4()))

    assert (code, out) == (130, f"{EXPORT}\n")
    last = err.splitlines()[-1]
    assert "keeps running" in last and f"videos.export_cancel export_id={EXPORT}" in last
    assert [task for task, _ in client.sent].count("videos.export_status") == 2


def test_a_refused_export_prints_the_workers_detail_and_exits_1():
    class Refusing(ScriptedClient):
        def export(self, **kwargs):
            raise NotFoundError("not_found", 404, "No video matches these filters")

    out, err = io.StringIO(), io.StringIO()
    code = cli.run(parse("--mall", str(uuid.uuid4()), "--wait"), Refusing([]), out, err)

    assert (code, out.getvalue()) == (1, "")
    assert err.getvalue() == "videoworker export: No video matches these filters\n"


def test_waiting_past_the_timeout_exits_3_and_leaves_the_export_running():
    client = ScriptedClient([state("running")] * 50)
    out, err = io.StringIO(), io.StringIO()
    args = parse("--mall", str(uuid.uuid4()), "--wait", "--poll", "0.01", "--timeout", "0.05")

    code = cli.run(args, client, out, err)

    assert code == 3 and "keeps running" in err.getvalue().splitlines()[-1]
