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

import itertools
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from unittest import mock

from bench.harness import US, Table, bench, interleaved, log, parser, ratio

BLOCK = 250
WARMUP = 20  # untimed calls first: imports, endpoint rules, caches
TARGET_US = 100.0
ENDPOINT = "http://127.0.0.1:9000"  # named in the URLs, never contacted


def make_store():  # noqa: ANN201 - S3ObjectStore
    from worker.adapters.s3.store import S3ObjectStore
    from worker.settings import load_settings

    return S3ObjectStore(
        load_settings(
            s3_endpoint_url=ENDPOINT,
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


def fresh_client():  # noqa: ANN201 - a boto3 S3 client
    """A new session and client, configured as the store's: what a handler that built
    its client per request would pay for every URL."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id="videoworker",
        aws_secret_access_key="videoworker-secret",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@bench("signing")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("signing", __doc__)
    options.add_argument("--urls", type=int, default=5000, help="URLs per method")
    options.add_argument("--fresh", type=int, default=200, help="URLs with a fresh client")
    args = options.parse_args(argv)

    store = make_store()
    if store.fast_presigner is None:
        raise SystemExit("the fast path was not built for this configuration")
    mall = uuid.uuid4()
    keys = [f"videos/{mall}/proxy/{uuid.uuid4()}.mp4" for _ in range(args.urls)]
    check_same_url(store, keys[0])
    fast_keys, reused_keys, fresh_keys = (itertools.cycle(keys) for _ in range(3))

    def fast() -> object:
        signed_at = datetime.now(UTC).replace(microsecond=0)
        return store.presign_get(next(fast_keys), 3600, signed_at=signed_at)

    def reused() -> object:
        return store.signer.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": next(reused_keys)}, ExpiresIn=3600
        )

    def fresh() -> object:
        return fresh_client().generate_presigned_url(
            "get_object", Params={"Bucket": "videos", "Key": next(fresh_keys)}, ExpiresIn=3600
        )

    methods = {"fast path": fast, "boto3, reused client": reused, "boto3, fresh client": fresh}
    wanted = {"fast path": args.urls, "boto3, reused client": args.urls}
    wanted["boto3, fresh client"] = args.fresh
    log(f"timing {args.urls} URLs per method ({args.fresh} with a fresh client)")
    # A fresh client takes ~100x longer: it gets proportionally smaller blocks.
    timed = interleaved(methods, wanted, block=BLOCK, warmup=WARMUP, unit=US)
    stats = {name: samples.summary() for name, samples in timed.items()}
    base = stats["boto3, reused client"].p50
    table = Table(
        "presigned GET URL, microseconds per URL",
        ["method", "urls", "p50", "p95", "p99", "mean", "vs boto3 reused"],
        conditions=("in process",),
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.mean, ratio(s.p50, base))
    fast_p50 = stats["fast path"].p50
    table.verdict(f"fast path p50 <= {TARGET_US:g} us", fast_p50 <= TARGET_US, f"{fast_p50:.1f} us")
    table.notes.append("URLs checked identical to boto3's for the same second")
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
