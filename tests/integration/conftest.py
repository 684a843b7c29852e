"""Fixtures shared by the integration tests."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pytest

from worker.adapters.postgres.rooms import search_plan


@pytest.fixture
def deny_deletes_under(s3, bucket):
    """Make the S3 server refuse DeleteObject for keys under a prefix, key by key.

    A bucket policy is the one way moto reports per-key errors inside a DeleteObjects
    answer, the partial failure real S3 gives when some keys cannot be removed.
    """

    def deny(prefix: str) -> None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:DeleteObject",
                    "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    yield deny
    s3.delete_bucket_policy(Bucket=bucket)


@pytest.fixture(params=["periods", "table"])
def search_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A search's matches read a period at a time (``periods``) or in one scan of the
    whole table (``table``), whatever the sample of the text would choose: the rows
    found must be the same either way."""
    few = request.param == "table"
    chosen = search_plan.TextSample.plan

    def plan(
        sample: search_plan.TextSample, q: str, cap: int, tags: Sequence[str] = ()
    ) -> search_plan.SearchPlan:
        return dataclasses.replace(chosen(sample, q, cap, tags), few=few)

    monkeypatch.setattr(search_plan.TextSample, "plan", plan)
    return request.param
