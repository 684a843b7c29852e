"""Port contract of the archive store (what an export needs of S3): objects read as
streams, ZIPs written as multipart uploads whose parts carry a CRC32 each.

As every ``test_port_contracts*.py``: each test runs on the in-memory fake (``[fake]``)
and on the real adapter against the HTTP S3 server (``[real]``).
"""

from __future__ import annotations

import base64
import uuid
import zlib

import pytest

from handlers.ports import ArchiveStore
from tests.unit.fake_exports import FakeArchive
from tests.unit.fakes import T0

MIB = 1024 * 1024


@pytest.fixture(params=["fake", "real"])
def archive(request: pytest.FixtureRequest) -> ArchiveStore:
    if request.param == "fake":
        return FakeArchive(T0)
    from worker.adapters.s3.archive import S3ArchiveStore

    return S3ArchiveStore(request.getfixturevalue("settings"))


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_parts_carry_their_crc32_and_complete_into_one_object_read_back_in_chunks(archive):
    key = f"exports/{uuid.uuid4()}/a.zip"
    first, last = bytes(range(256)) * (5 * MIB // 256), b"the end"
    upload_id = archive.start_upload(key, "application/zip")
    parts = [
        archive.upload_part(key, upload_id, 1, first),
        archive.upload_part(key, upload_id, 2, last),
    ]

    assert [part.crc32 for part in parts] == [_crc32(first), _crc32(last)]
    assert [u.upload_id for u in archive.uploads(f"{key.rsplit('/', 1)[0]}/")] == [upload_id]
    archive.complete_upload(key, upload_id, parts)

    assert archive.head(key) == len(first) + len(last)
    assert b"".join(archive.read(key, len(first) + len(last))) == first + last
    assert list(archive.uploads(key)) == []
    archive.delete(key)
    assert archive.head(key) is None


def test_an_aborted_upload_is_gone_and_aborting_it_again_is_not_an_error(archive):
    key = f"exports/{uuid.uuid4()}/b.zip"
    upload_id = archive.start_upload(key, "application/zip")
    archive.upload_part(key, upload_id, 1, b"x" * 10)

    archive.abort_upload(key, upload_id)
    archive.abort_upload(key, upload_id)

    assert list(archive.uploads(key)) == []
    assert archive.head(key) is None
