"""Signing bench: microseconds per presigned GET URL, in process.

What it measures, per URL, for keys laid out as the worker stores them
(``videos/<mall>/proxy/<video>.mp4``) and the contract's default expiry (3600 s):

* ``fast path``: ``S3ObjectStore.presign_get`` as the worker runs it, i.e.
  ``worker.adapters.s3.store.FastPresigner`` (botocore's SigV4 query signer, with everything
  that does not depend on the key or the time computed once);
* ``boto3, reused client``: ``generate_presigned_url`` on the store's long-lived
  client, which is what the worker did before;
* ``boto3, fresh client``: a new session and client for every URL (what a handler
  that built its client per request would pay), on fewer samples (``--fresh``).

The three are timed call by call in interleaved blocks, so load from other jobs on
the shared machine hits them alike. Before timing, the bench checks that the fast
path and boto3 produce the same URL for the same key and second (boto3's clock is
patched, as in ``tests/unit/test_presign.py``).

No services are started: presigning makes no network call, and the endpoint named
(``http://127.0.0.1:9000``) is never contacted.

How to read the table: p50/p95/p99 in microseconds per URL; ``vs boto3 reused`` is
the ratio of p50s (lower is better). Target: fast path <= 100 us.
Run: ``python -m bench.signing [--urls 5000] [--fresh 200]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from unittest import mock

from bench.common import Table, log, ratio, run_label, summary

BLOCK = 250
TARGET_US = 100.0


def make_store():  # noqa: ANN201 - S3ObjectStore
    from worker.adapters.s3.store import S3ObjectStore
    from worker.settings import load_settings

    return S3ObjectStore(
        load_settings(
            s3_endpoint_url="http://127.0.0.1:9000",
            s3_public_endpoint_url=None,
            s3_bucket="videos",
            aws_access_key_id="videoworker",
            aws_secret_access_key="videoworker-secret",
            aws_region="us-east-1",
        )
    )


def check_same_url(store, key: str) -> None:  # noqa: ANN001
    import botocore.auth

    at = datetime.now(UTC).replace(microsecond=0)
    with mock.patch.object(
        botocore.auth, "get_current_datetime", return_value=at.replace(tzinfo=None)
    ):
        expected = store.signer.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=3600
        )
    if store.presign_get(key, 3600, signed_at=at) != expected:
        raise SystemExit("fast path and boto3 disagree: the bench would compare different URLs")


def timed(call: Callable[[str], object], keys: Sequence[str]) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for key in keys:
        started = clock()
        call(key)
        out.append((clock() - started) / 1000)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__)
    parser.add_argument("--urls", type=int, default=5000, help="URLs per method")
    parser.add_argument("--fresh", type=int, default=200, help="URLs with a fresh client")
    args = parser.parse_args(argv)

    from worker.adapters.s3.store import _client
    from worker.settings import load_settings

    store = make_store()
    if store.fast_presigner is None:
        raise SystemExit("the fast path was not built for this configuration")
    mall = uuid.uuid4()
    keys = [f"videos/{mall}/proxy/{uuid.uuid4()}.mp4" for _ in range(args.urls)]
    check_same_url(store, keys[0])
    settings = load_settings(
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_bucket="videos",
        aws_access_key_id="videoworker",
        aws_secret_access_key="videoworker-secret",
    )

    def fast(key: str) -> object:
        return store.presign_get(key, 3600, signed_at=datetime.now(UTC).replace(microsecond=0))

    def reused(key: str) -> object:
        return store.signer.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=3600
        )

    def fresh(key: str) -> object:
        client = _client(settings, settings.s3_endpoint_url)
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": "videos", "Key": key}, ExpiresIn=3600
        )

    methods = {"fast path": fast, "boto3, reused client": reused, "boto3, fresh client": fresh}
    wanted = {"fast path": args.urls, "boto3, reused client": args.urls}
    wanted["boto3, fresh client"] = args.fresh
    for call in methods.values():  # warm-up: imports, endpoint rules, caches
        for key in keys[:20]:
            call(key)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    log(f"timing {args.urls} URLs per method ({args.fresh} with a fresh client)")
    position = dict.fromkeys(methods, 0)
    while any(len(samples[n]) < wanted[n] for n in methods):
        for name, call in methods.items():
            # A fresh client takes ~100x longer: give it proportionally smaller blocks.
            size = max(1, BLOCK * wanted[name] // args.urls)
            start = position[name]
            block = keys[start : start + min(size, wanted[name] - len(samples[name]))]
            samples[name].extend(timed(call, block))
            position[name] = (start + len(block)) % len(keys)

    stats = {name: summary(values) for name, values in samples.items()}
    base = stats["boto3, reused client"].p50
    table = Table(
        f"presigned GET URL, microseconds per URL ({run_label('in process')})",
        ["method", "urls", "p50", "p95", "p99", "mean", "vs boto3 reused"],
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.mean, ratio(s.p50, base))
    fast_p50 = stats["fast path"].p50
    table.notes.append(
        f"fast path p50 <= {TARGET_US:g} us: {'yes' if fast_p50 <= TARGET_US else 'NO'}; "
        "URLs checked identical to boto3's for the same second"
    )
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
