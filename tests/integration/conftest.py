"""Fixtures shared by the integration tests."""

from __future__ import annotations

import json

import pytest


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
