"""Gallery bench: a page of 20 thumbnails in one message, against the seed's 1 + 20.

What it measures: an outside caller (plain Celery, JSON, nothing of this project
imported: ``bench.roundtrip``'s caller) shows gallery pages of the busiest mall (or,
with ``--by pin``, of its busiest camera), 20 videos a page with their thumbnails,
through a real worker started with the production command (``celery -A worker worker
--loglevel INFO -Q videos,videos.maintenance``, prefork, 2 children on this 2-core
machine), on the embedded stack (PostgreSQL, Redis, moto S3) loaded with ``--videos``
rows by ``bench.dataset``. Pages rotate over the first ``--pages``. Each flow, timed
from the first send to the last reply decoded:

* ``one message``: ``videos.list(mall_id, page, page_size=20, sign=["thumbnail"])``;
* ``seed: list + 20 sign_url``: the seed's flow, as the synchronous client makes it:
  ``videos.list``, then ``videos.sign_url(video_id, target="thumbnail")`` for each item
  of the page that ``has_thumbnail`` (one after another; the others show a
  placeholder, as a null URL does in the first flow);
* ``seed, sign_url sent at once``: the same messages, the sign_url calls all sent
  before the first reply is awaited (a caller that fans out);
* ``list + sign_urls``: ``videos.list``, then one ``videos.sign_urls`` for the page's ids.

The flows take turns in blocks of ``BLOCK`` pages, so load from other jobs on the
machine hits all of them alike. Before timing, the bench checks that both the one
message and the seed's flow sign the same thumbnails (the same object keys) for a page.

How to read the table: milliseconds per gallery page; ``messages`` per page (mean);
``worker CPU``: user + system of the worker's process tree per page; ``seed / this``:
the seed flow's p50 (and p95) over this flow's: how many times faster this flow is.
Target: the seed's flow / one message >= 10x (p50 and p95); the verdict line says yes
or no.

``--database-url`` loads a database ``vw_bench_gallery`` created on that server (dropped
afterwards) instead of the embedded PostgreSQL; Redis and S3 stay embedded.

Run: ``python -m bench.gallery [--pages 200] [--videos 10000] [--by mall|pin]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from bench.common import Stack, WorkerProcess, WorkerSpec, stopping
from bench.harness import Method, Samples, Table, bench, interleaved, log, parser
from bench.roundtrip import Caller, CallerConfig, ping

PAGE_SIZE = 20
BLOCK = 10
WARMUP = 10
TARGET_SPEEDUP = 10.0
QUEUE = "videos"
DATABASE = "vw_bench_gallery"
ONE = "one message"
SEED = "seed: list + 20 sign_url"
FANOUT = "seed, sign_url sent at once"
BATCH = "list + sign_urls"


class Gallery:
    """The caller's side of each flow: one gallery page, its thumbnail URLs by video id."""

    def __init__(self, caller: Caller, scope: dict[str, str]) -> None:
        self.app = caller.app
        self.scope = scope
        self.messages = 0

    def _call(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return self._reply(self._send(name, **kwargs))

    def _send(self, name: str, **kwargs: Any) -> Any:
        self.messages += 1
        return self.app.send_task(name, kwargs=kwargs, queue=QUEUE)

    @staticmethod
    def _reply(result: Any, missing_ok: bool = False) -> dict[str, Any]:
        envelope = result.get(timeout=30)
        if envelope.get("ok"):
            return envelope["data"]
        if missing_ok and envelope.get("error", {}).get("code") == "not_available":
            return {}
        raise RuntimeError(f"answered {envelope!r}")

    def _list(self, page: int, **extra: Any) -> list[dict[str, Any]]:
        data = self._call("videos.list", **self.scope, page=page, page_size=PAGE_SIZE, **extra)
        if not data["videos"]:
            raise RuntimeError(f"page {page} is empty: lower --pages")
        return data["videos"]

    def one_message(self, page: int) -> dict[str, str | None]:
        items = self._list(page, sign=["thumbnail"])
        return {item["id"]: item["urls"]["thumbnail"] for item in items}

    def seed(self, page: int) -> dict[str, str | None]:
        items = self._list(page)
        urls: dict[str, str | None] = {item["id"]: None for item in items}
        for item in items:
            if item["has_thumbnail"]:
                urls[item["id"]] = self._call(
                    "videos.sign_url", video_id=item["id"], target="thumbnail"
                )["url"]
        return urls

    def fanout(self, page: int) -> dict[str, str | None]:
        items = self._list(page)
        sent = [
            (item["id"], self._send("videos.sign_url", video_id=item["id"], target="thumbnail"))
            for item in items
            if item["has_thumbnail"]
        ]
        urls: dict[str, str | None] = {item["id"]: None for item in items}
        for video_id, result in sent:
            urls[video_id] = self._reply(result).get("url")
        return urls

    def batch(self, page: int) -> dict[str, str | None]:
        items = self._list(page)
        urls: dict[str, str | None] = {item["id"]: None for item in items}
        data = self._call(
            "videos.sign_urls", video_ids=[item["id"] for item in items], target="thumbnail"
        )
        urls.update({signed["video_id"]: signed["url"] for signed in data["urls"]})
        return urls

    def flows(self) -> dict[str, Callable[[int], dict[str, str | None]]]:
        return {ONE: self.one_message, SEED: self.seed, FANOUT: self.fanout, BATCH: self.batch}


def signed_keys(urls: dict[str, str | None]) -> dict[str, str | None]:
    """The object each URL names (its path), without the signature and the time."""
    return {video_id: url and urlsplit(url).path for video_id, url in urls.items()}


def check_same(gallery: Gallery, pages: Sequence[int]) -> int:
    """Both flows sign the same thumbnails on these pages; how many URLs that was."""
    signed = 0
    for page in pages:
        one, seed = gallery.one_message(page), gallery.seed(page)
        if signed_keys(one) != signed_keys(seed):
            raise RuntimeError(f"page {page}: one message and the seed's flow differ")
        signed += sum(url is not None for url in one.values())
    return signed


def measure(
    caller: Caller, scope: dict[str, str], pages: Sequence[int], samples: int, worker_pid: int
) -> dict[str, tuple[Samples, float]]:
    """Each flow's page times (ms, the worker tree's CPU charged per block) and its
    messages per page; one ``Gallery`` a flow, so that each counts its own messages."""
    galleries = {name: Gallery(caller, scope) for name in Gallery(caller, scope).flows()}
    methods = {}
    for name, gallery in galleries.items():
        flow, cycle = gallery.flows()[name], itertools.cycle(pages)
        for page in pages[:WARMUP]:
            flow(page)
        gallery.messages = 0
        methods[name] = Method(lambda f=flow, c=cycle: f(next(c)), server=worker_pid)
    timed = interleaved(methods, samples, block=BLOCK)
    return {name: (timed[name], galleries[name].messages / samples) for name in galleries}


def print_table(
    results: dict[str, tuple[Samples, float]], args: argparse.Namespace, scope: str
) -> None:
    stats = {name: entry.summary() for name, (entry, _) in results.items()}
    seed = stats[SEED]
    table = Table(
        f"gallery page of {PAGE_SIZE} with thumbnail URLs, {scope}, {args.pages} pages rotated, "
        f"{args.samples} pages per flow, ms",
        ["flow", "messages", "p50", "p95", "p99", "max", "worker CPU ms", "seed / this p50",
         "seed / this p95"],
        conditions=("loopback", f"{args.videos:,} videos"),
    )  # fmt: skip
    for name, (entry, messages) in results.items():
        s = stats[name]
        table.add(
            name,
            f"{messages:.1f}",
            s.p50,
            s.p95,
            s.p99,
            s.max,
            entry.cpu_us(server=True) / 1000,
            f"{seed.p50 / s.p50:.1f}x",
            f"{seed.p95 / s.p95:.1f}x",
        )
    one = stats[ONE]
    met = seed.p50 / one.p50 >= TARGET_SPEEDUP and seed.p95 / one.p95 >= TARGET_SPEEDUP
    table.notes.append(
        "worker CPU: user + system of the worker's main process and pool children, per page"
    )
    table.verdict(
        f"seed's flow / one message >= {TARGET_SPEEDUP:.0f}x (p50 and p95)",
        met,
        f"{seed.p50 / one.p50:.1f}x p50, {seed.p95 / one.p95:.1f}x p95",
    )
    table.print()


def busiest(database_url: str, by: str) -> tuple[dict[str, str], int]:
    """The busiest mall (or its busiest pin) as list kwargs, and its live videos."""
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        mall, videos = conn.execute(
            "SELECT mall_id, count(*) FROM videos WHERE trashed_at IS NULL"
            " GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        if by == "mall":
            return {"mall_id": str(mall)}, videos
        pin, videos = conn.execute(
            "SELECT pin_id, count(*) FROM videos WHERE trashed_at IS NULL AND mall_id = %s"
            " GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
            (mall,),
        ).fetchone()
    return {"pin_id": str(pin)}, videos


@contextlib.contextmanager
def given_database(stack: Stack, url: str | None) -> Any:
    """The database the worker uses: the stack's, or one made on the given server."""
    if url is None:
        yield stack.database_url
        return
    from bench.dataset import Server
    from worker.adapters.postgres.migrate import upgrade

    with Server(url, None, False) as server:
        server.drop(DATABASE)
        server.create(DATABASE)
        try:
            database_url = server.url(DATABASE)
            with contextlib.redirect_stdout(sys.stderr):
                upgrade(database_url)
            yield database_url
        finally:
            server.drop(DATABASE)


@bench("gallery")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("gallery", __doc__)
    options.add_argument("--samples", type=int, default=200, help="gallery pages per flow")
    options.add_argument("--pages", type=int, default=50, help="distinct pages rotated over")
    options.add_argument("--videos", type=int, default=10_000, help="catalog rows to load")
    options.add_argument("--by", choices=("mall", "pin"), default="mall", help="gallery of")
    options.add_argument("--database-url", help="a PostgreSQL server to use instead")
    args = options.parse_args(argv)

    from bench.dataset import load

    with Stack(postgres=args.database_url is None) as stack:
        with given_database(stack, args.database_url) as database_url:
            log(f"loading {args.videos:,} videos")
            load(database_url, args.videos, log=False)
            scope, videos = busiest(database_url, args.by)
            if videos < args.pages * PAGE_SIZE:
                raise SystemExit(f"the busiest {args.by} has {videos} videos: lower --pages")
            env = {**stack.env, "DATABASE_URL": database_url}
            config = CallerConfig(stack.broker_url, stack.backend_url, ())
            caller = Caller(config)
            worker = WorkerProcess(WorkerSpec(), env, stack.log_path("worker"))
            with stopping(caller, worker):
                log("starting the worker")
                worker.start()
                worker.wait_ready(ping(caller.app, "videos.stats", {}, QUEUE))
                gallery = Gallery(caller, scope)
                pages = list(range(1, args.pages + 1))
                signed = check_same(gallery, pages[:3])
                log(f"checked: both flows sign the same {signed} thumbnails on pages 1-3")
                log(f"timing {args.samples} pages per flow, interleaved in blocks of {BLOCK}")
                results = measure(caller, scope, pages, args.samples, worker.pid)
            label = f"busiest {args.by} ({videos:,} videos)"
            print_table(results, args, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
