"""Past one machine: a three-node RabbitMQ cluster, two worker nodes, two beats.

The brokers are real nodes of Debian's ``rabbitmq-server`` (``worker.dev.cluster``), on
ports and names of their own; PostgreSQL, Redis and S3 are the fault stack's. The
cluster takes half a minute to form and the runs minutes, so these tests run from
``make fault-scale`` (``VIDEOWORKER_SCALE_TESTS=1``), not in every pass;
``SCALE_BEAT_MINUTES`` lengthens the beat run (ten minutes in ``make fault-scale``).

- 5,000 requests (gets, signed URLs and 300 deletes) while the node leading the
  ``videos`` queue is killed, then one whole worker node: every request is answered,
  none lost, and every delete answers that it deleted its video, audited once.
- Two beats on one RedBeat lock: the active one is SIGKILLed, the standby sends the next
  schedule within 60 s, and no schedule is sent twice within its period.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import outside_app, start_worker, wait_until_answering
from tests.faults.conftest import WorkerProcess, close_caller
from tests.support import poll
from worker.dev.cluster import Node, RabbitCluster

pytestmark = pytest.mark.skipif(
    os.environ.get("VIDEOWORKER_SCALE_TESTS") != "1"
    or not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(),
    reason="the scale topology's tests run from `make fault-scale` (rabbitmq-server needed)",
)

REQUESTS = 5_000
DELETES = 300
CALLERS = 4
LEADER_KILLED_AT = 1_000
WORKER_KILLED_AT = 2_500
ANSWER_TIMEOUT_SECONDS = 300
# Publishes retried across the failover list while a node's queues elect new leaders.
PUBLISH_RETRY = {"max_retries": 60, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 1}


@pytest.fixture(scope="module")
def cluster():
    started = RabbitCluster()
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
def on_cluster(faults, cluster, monkeypatch) -> dict[str, str]:
    env = {**faults.env, "CELERY_BROKER_URL": cluster.url}
    # Plain Celery prefers the environment's broker to the one it is given.
    monkeypatch.setenv("CELERY_BROKER_URL", cluster.url)
    return env


def start_node(env: dict[str, str], log_dir: Path, name: str) -> WorkerProcess:
    log_path = log_dir / f"{name}.log"
    process = start_worker(env, log_path, "-n", f"{name}@%h")
    node = WorkerProcess(process, log_path)
    app = outside_app(env)
    try:
        wait_until_answering(app, process, timeout=120)
    finally:
        close_caller(app)
    node.children()
    return node


@pytest.mark.timeout(900)
def test_a_broker_node_and_a_worker_node_lost_under_load_lose_no_request(
    faults, cluster, on_cluster, tmp_path
):
    catalog = faults.catalog()
    mall = catalog.mall()
    pin = catalog.pin(mall)
    kept = faults.insert_videos(mall, pin, 50, age=timedelta(days=1))
    doomed = faults.insert_videos(mall, pin, DELETES, age=timedelta(days=1))
    nodes = [start_node(on_cluster, tmp_path, name) for name in ("w1", "w2")]
    leader = cluster.queue_leader("videos")
    assert sorted(cluster.queue_members("videos")) == sorted(n.nodename for n in cluster.nodes)

    plan: list[tuple[str, dict[str, Any], str]] = []
    deletes = iter(doomed)
    for index in range(REQUESTS):
        if index % (REQUESTS // DELETES) == 7 and (video := next(deletes, None)) is not None:
            plan.append(("videos.delete", {"video_id": str(video["id"])}, "videos.maintenance"))
        elif index % 2:
            plan.append(("videos.get", {"video_id": str(kept[index % len(kept)]["id"])}, "videos"))
        else:
            kwargs = {"video_id": str(kept[index % len(kept)]["id"])}
            plan.append(("videos.sign_url", kwargs, "videos"))
    sent = Counter[str]()
    lock = threading.Lock()

    def send(share: list[tuple[int, tuple[str, dict[str, Any], str]]]) -> list[tuple[int, Any]]:
        app = outside_app(on_cluster)
        app.conf.task_publish_retry_policy = PUBLISH_RETRY
        results = []
        for index, (task, kwargs, queue) in share:
            results.append((index, app.send_task(task, kwargs=kwargs, queue=queue)))
            with lock:
                sent["all"] += 1
        return results

    shares = [list(enumerate(plan))[i::CALLERS] for i in range(CALLERS)]
    with ThreadPoolExecutor(CALLERS) as pool:
        futures = [pool.submit(send, share) for share in shares]
        poll(lambda: sent["all"] >= LEADER_KILLED_AT, timeout=120, interval=0.01,
             message="the first requests to be sent")  # fmt: skip
        killed_leader_at = time.monotonic()
        cluster.node(leader).kill()
        poll(lambda: sent["all"] >= WORKER_KILLED_AT, timeout=180, interval=0.01,
             message="requests to go on after the leader's loss")  # fmt: skip
        nodes[0].kill()
        sending = [future.result(timeout=300) for future in futures]
    new_leader = cluster.queue_leader("videos")
    assert new_leader != leader

    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    for share in sending:
        for index, result in share:
            answers[index] = result.get(timeout=max(1.0, deadline - time.monotonic()))
    assert len(answers) == REQUESTS
    wrong = [
        (plan[i], answer) for i, answer in answers.items()
        if answer.get("status") != 200 or not answer.get("ok", True)
    ]  # fmt: skip
    assert not wrong, wrong[:5]
    for index, (task, kwargs, _) in enumerate(plan):
        if task == "videos.delete":
            answer = answers[index]["data"]
            assert answer["video_id"] == kwargs["video_id"]
            assert answer["deleted"] is True, answer
    # Each doomed video deleted and audited once, whatever ran twice.
    assert not ({v["id"] for v in doomed} & faults.video_ids())
    audited = faults.audited()
    assert all(audited[v["id"]] == 1 for v in doomed), audited.most_common(3)
    faults.assert_storage_consistent()
    print(
        f"\n{REQUESTS} requests answered; leader {leader} killed, {new_leader} leads; "
        f"worker node w1 killed; {time.monotonic() - killed_leader_at:.1f}s from the "
        "leader's loss to the last answer"
    )
    for node in nodes:
        node.stop()
    # The killed node rejoins for the next test.
    cluster.node(leader).start().await_startup()


SENT = re.compile(r"Sending due task (\S+) ")


class Sends:
    """Every schedule the beats send, as each line reaches their logs: (time, entry)."""

    def __init__(self, logs: list[Path]) -> None:
        self.logs = logs
        self.seen: list[list[tuple[float, str]]] = [[] for _ in logs]
        self._offsets = [0] * len(logs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for index, log in enumerate(self.logs):
                if not log.exists():
                    continue
                with log.open("rb") as handle:
                    handle.seek(self._offsets[index])
                    chunk = handle.read()
                complete = chunk.rfind(b"\n") + 1
                self._offsets[index] += complete
                now = time.time()
                for line in chunk[:complete].decode(errors="replace").splitlines():
                    if (match := SENT.search(line)) is not None:
                        self.seen[index].append((now, match.group(1)))

    def __enter__(self) -> Sends:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def by(self, index: int) -> list[tuple[float, str]]:
        return list(self.seen[index])

    def all(self) -> list[tuple[float, str]]:
        return sorted(self.seen[0] + self.seen[1])


BEAT_MINUTES = float(os.environ.get("SCALE_BEAT_MINUTES", "2.5"))


@pytest.mark.timeout(int(BEAT_MINUTES * 60) + 300)
def test_two_beats_one_killed_each_schedule_sent_once_per_period(faults, on_cluster, tmp_path):
    minutes = BEAT_MINUTES
    periods = {"purge-storage": 10.0, "refresh-stats": 15.0}
    env = {
        **on_cluster,
        "PURGE_INTERVAL_SECONDS": str(periods["purge-storage"]),
        "STATS_REFRESH_INTERVAL_SECONDS": str(periods["refresh-stats"]),
        "LOG_FORMAT": "text",
    }
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    beats = [Node.beat(env, log).start() for log in logs]
    with Sends(logs) as sent:
        try:
            poll(lambda: bool(sent.all()), timeout=60, message="a beat to send")
            active = 0 if sent.by(0) else 1
            started = time.monotonic()
            time.sleep(min(30.0, minutes * 60 / 4))
            killed_at = time.time()
            beats[active].kill()

            def standby_sent() -> bool:
                return any(at > killed_at for at, _ in sent.by(1 - active))

            poll(standby_sent, timeout=90, message="the standby beat to send")
            took_over = min(at for at, _ in sent.by(1 - active) if at > killed_at) - killed_at
            remaining = minutes * 60 - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
        finally:
            for beat in beats:
                beat.stop()
        everything = sent.all()
    print(f"\nstandby sent {took_over:.1f}s after the active beat's SIGKILL; "
          f"{len(everything)} sends in {minutes:g} min")  # fmt: skip
    assert took_over <= 60
    for entry, period in periods.items():
        times = [at for at, name in everything if name == entry]
        assert len(times) >= 3
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        # Never twice in one period (a second of jitter in the beat's tick and the watch).
        assert min(gaps) >= period - 1.5, (entry, gaps)
