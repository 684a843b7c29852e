"""``videoworker export --wait`` against the real worker: a tiny export by filter, the
id and then the URL on stdout, progress as plain lines on a pipe, the ZIP fetched."""

from __future__ import annotations

import io
import urllib.request
import uuid
import zipfile

from tests.support import run_cli


def test_export_by_mall_waits_and_prints_the_url_of_the_zip(
    services, catalog, s3, bucket, worker_process
):
    mall, other = catalog.mall("Mall X"), catalog.mall("Elsewhere")
    pin = catalog.pin(mall, "Dock")
    videos = [catalog.video(mall, pin, original_filename=f"v{n}.mp4") for n in range(2)]
    catalog.video(other, catalog.pin(other))
    for n, video in enumerate(videos):
        s3.put_object(Bucket=bucket, Key=video["proxy_path"], Body=bytes([n]) * 50_000)

    result = run_cli(
        "export", "--mall", str(mall), "--name", "dock", "--wait", "--poll", "0.2",
        "--timeout", "60", env=services, timeout=90, check=0,
    )  # fmt: skip

    export_id, url = result.stdout.split()
    uuid.UUID(export_id)
    assert "\x1b[" not in result.stderr  # a pipe gets plain lines, no bar
    assert f"export {export_id}: completed" in result.stderr.splitlines()[-1]
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our S3
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    assert archive.testzip() is None
    names = sorted(archive.namelist())
    assert names[-1] == "manifest.csv" and len(names) == 3
    assert [name.startswith("Dock/") and name[-6:] for name in names[:2]] == ["v0.mp4", "v1.mp4"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_export_of_an_unknown_video_says_so_and_exits_1(services, worker_process):
    missing = str(uuid.uuid4())

    result = run_cli("export", missing, "--wait", env=services, timeout=60)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == f"videoworker export: Video {missing} not found"
