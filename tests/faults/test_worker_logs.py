"""What a worker writes to its log while it answers: never a URL signature.

Found while reading worker logs for the fault tests: Celery's "task succeeded" record
carries the task's return value in its ``data`` extra, and the JSON formatter writes
that dict out whole, so a ``videos.sign_url`` answer reaches the log with its
signature.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.faults.conftest import REQUESTS_QUEUE
from tests.support import poll

# Run once, in `make test`, whatever the broker: what is tested is the log lines the task writes.
pytestmark = pytest.mark.broker_independent


def test_a_signed_url_never_reaches_the_worker_log(faults, workers, caller, mall_and_pin):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin, upload_objects=False)
    worker = workers.start()

    result = caller.send_task(
        "videos.sign_url", kwargs={"video_id": str(video["id"])}, queue=REQUESTS_QUEUE
    )
    envelope = result.get(timeout=30)
    poll(lambda: worker.completions(result.id) == 1, timeout=15, message="the success line")

    [signature] = parse_qs(urlsplit(envelope["data"]["url"]).query)["X-Amz-Signature"]
    assert signature not in worker.log_path.read_text(errors="replace")
