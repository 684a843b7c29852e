"""The README's quick start, command by command, against a real worker; and ``run``'s
own newcomer paths: a taken port, and Flower beside the stack."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, poll, run_cli
from worker.dev.embedded import PREFERRED_PORTS
from worker.ops import demo

# Run once, in `make test`, whatever the broker:
# the README's quick start runs on the embedded default stack.
pytestmark = pytest.mark.broker_independent


def envelope(*args: str, env: dict[str, str]) -> dict:
    result = run_cli("call", *args, env=env, check=0)
    return json.loads(result.stdout)


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback S3
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def test_the_quick_start_works_as_the_readme_shows(services, clean, worker_process, s3, bucket):
    loaded = run_cli("demo", "--videos", "40", env=services, check=0)
    suggested = dict(re.findall(r"videoworker call (videos\.\w+) (\S+=\S+)", loaded.stdout))
    mall_arg, video_arg = suggested["videos.list"], suggested["videos.sign_url"]
    assert mall_arg == f"mall_id={demo.DEMO_MALL_IDS[0]}"

    listed = envelope("videos.list", mall_arg, "page_size=3", env=services)

    assert listed["ok"] and len(listed["data"]["videos"]) == 3
    assert listed["data"]["total"] > 3

    signed = envelope("videos.sign_url", video_arg, "target=proxy", env=services)
    thumb = envelope("videos.sign_url", video_arg, "target=thumbnail", env=services)
    status, content_type, body = fetch(signed["data"]["url"])

    assert (status, content_type) == (200, "video/mp4")
    assert body == demo.asset("demo.mp4")
    assert fetch(thumb["data"]["url"])[2] == demo.asset("demo.jpg")

    video_id = video_arg.split("=", 1)[1]
    detail = envelope("videos.get", video_arg, env=services)["data"]
    keys = [detail["original_path"], detail["proxy_path"], detail["thumbnail_path"]]
    deleted = envelope("videos.delete", video_arg, env=services)

    assert deleted["ok"] and deleted["data"]["deleted"] is True
    assert sorted(deleted["data"]["files_deleted"]) == sorted(keys)
    assert deleted["data"]["message"] == (
        "Video deleted successfully. 3 file(s) removed from storage."
    )
    for key in keys:
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=bucket, Key=key)
    assert fetch(signed["data"]["url"])[0] == 404
    missing = run_cli("call", "videos.get", f"video_id={video_id}", env=services, check=1)
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"


@pytest.fixture
def run_env(services) -> dict[str, str]:
    """The session's services with a broker of its own: the session's worker never
    takes this run's messages, nor this run's worker the session's."""
    base = services["CELERY_RESULT_BACKEND"].rsplit("/", 1)[0]
    env = {**services, "CELERY_BROKER_URL": f"{base}/10", "CELERY_RESULT_BACKEND": f"{base}/11"}
    return env


def start_run(env: dict[str, str], home: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = home.parent / "run.log"
    keep = {k: v for k, v in os.environ.items() if k not in env and k != "DATABASE_URL"}
    process = subprocess.Popen(  # noqa: S603 - our own module, arguments as a list
        [sys.executable, "-m", "worker.ops.cli", "run", "--no-beat", "--concurrency", "1", *args],
        cwd=ROOT,
        env={**keep, **env, "VIDEOWORKER_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def wait_ready(process: subprocess.Popen, log: Path) -> str:
    def ready() -> str:
        if process.poll() is not None:
            raise AssertionError(f"run exited {process.returncode}:\n{log.read_text()[-3000:]}")
        text = log.read_text()
        return text if "videoworker: ready" in text else ""

    return poll(ready, timeout=120, interval=0.2, message="videoworker run to be ready")


def stop_run(process: subprocess.Popen, log: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError(f"run did not stop:\n{log.read_text()[-3000:]}") from None
    assert process.returncode == 0, log.read_text()[-3000:]
    assert "videoworker: stopped" in log.read_text()


@pytest.fixture
def postgres_port_taken() -> Iterator[int]:
    """The embedded PostgreSQL's usual port held by another program (or already taken)."""
    port = PREFERRED_PORTS["postgres"]
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
    except OSError:
        pass  # someone holds it already: just as good
    try:
        yield port
    finally:
        holder.close()


def test_a_call_nobody_answers_says_to_start_a_worker(run_env):
    # run_env's broker has no worker until a run of this file starts one.
    result = run_cli("call", "videos.stats", "--timeout", "1", env=run_env, check=3)

    assert result.stderr.strip() == (
        "videoworker call: no answer within 1s; is a worker running? (`make run` in another "
        "terminal; `videoworker health --worker` checks)"
    )


def test_run_moves_off_a_taken_port_and_says_so(run_env, postgres_port_taken, tmp_path):
    env = {k: v for k, v in run_env.items() if k != "DATABASE_URL"}
    process, log = start_run(env, tmp_path / "home")
    try:
        text = wait_ready(process, log)
        stack_env = (tmp_path / "home" / "stack.env").read_text()
    finally:
        stop_run(process, log)

    moved = re.search(
        rf"videoworker: port {postgres_port_taken} is taken by another program; embedded "
        r"PostgreSQL listens on 127\.0\.0\.1:(\d+) instead \(written to stack\.env\)",
        text,
    )
    assert moved, text
    assert f"127.0.0.1:{moved.group(1)}/videoworker" in stack_env
    assert not (tmp_path / "home" / "stack.env").exists()  # removed when the run stopped


def test_run_with_flower_serves_flower_beside_the_worker(run_env, tmp_path):
    pytest.importorskip("flower", reason="the production extra is not installed")
    process, log = start_run(run_env, tmp_path / "home", "--flower")
    try:
        text = wait_ready(process, log)
        url = re.search(r"videoworker: Flower at (http://127\.0\.0\.1:\d+)", text)
        assert url, text

        def flower_answers() -> bool:
            try:
                return fetch(url.group(1) + "/")[0] == 200
            except OSError:
                return False

        poll(flower_answers, timeout=60, interval=0.3, message="Flower to serve its page")
    finally:
        stop_run(process, log)
