"""The ZIP of an export: its entries' names, its manifest, and the pipe that streams it
from S3 into an S3 multipart upload.

What comparable tools got wrong, and what this does instead:

- ZIPs past 4 GiB (or 2.9 GiB, where sizes were signed) came out corrupt when the
  archive was written without ZIP64. zipstream-ng switches each entry, and the central
  directory, to ZIP64 by itself when a size or an offset needs it, and is given every
  entry's size first (``sized``), so the archive's exact length is known before a byte
  is written: the part size is chosen from it, and no estimate can run past 10,000 parts.
- Archives were built in memory or on disk (out of memory on tens of thousands of
  files, gateway timeouts while the whole ZIP was assembled). Here bytes go from each
  GetObject stream through the ZIP writer into a buffer of one part, uploaded while the
  next fills: at most two parts and a read chunk are held, whatever the export's size.
- Entries are stored, not deflated: videos and JPEGs are compressed already, and a CRC
  computed while streaming is all a stored entry needs.
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import zipstream

from handlers.ports import ArchiveStore
from schemas.responses import VideoDetailResponse

MIB = 1024 * 1024
# S3's bounds: parts of at least 5 MiB (but the last), at most 10,000 of them.
MIN_PART_SIZE = 5 * MIB
DEFAULT_PART_SIZE = 8 * MIB
MAX_PARTS = 10_000
# How much of an object one read asks for.
READ_CHUNK = MIB
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = (
    "video_id",
    "name",
    "kind",
    "size",
    "uploaded_at",
    "recorded_at",
    "mall_id",
    "pin_id",
    "status",
)
# A component longer than this is shortened (most file systems stop at 255 bytes).
NAME_MAX_CHARS = 120
# Printable but refused by Windows' file systems: an archive must unpack anywhere.
_NOT_PORTABLE = frozenset('<>:"|?*/\\')
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def safe_component(text: str, fallback: str) -> str:
    """One path component anyone can unpack: no separator, no control or invisible
    character, no ``.`` or ``..``, no leading or trailing space or dot, not empty."""
    text = unicodedata.normalize("NFC", text)
    cleaned = "".join(
        "_" if ch in _NOT_PORTABLE or unicodedata.category(ch) in _HIDDEN else ch for ch in text
    )
    cleaned = cleaned.strip(" .")
    if not cleaned:
        return fallback
    if len(cleaned) > NAME_MAX_CHARS:
        suffix = PurePosixPath(cleaned).suffix
        suffix = suffix if len(suffix) <= 10 else ""
        cleaned = cleaned[: NAME_MAX_CHARS - len(suffix)] + suffix
    return cleaned


def stamp(at: datetime) -> str:
    """``uploaded_at`` as it starts a name: sortable, and without colons."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")


def _with_suffix(filename: str, suffix: str) -> str:
    stem = PurePosixPath(filename).stem if PurePosixPath(filename).suffix else filename
    return f"{stem}{suffix}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of the ZIP, or one that could not be (``size`` None: missing)."""

    video: VideoDetailResponse
    kind: str  # "video" or "thumbnail"
    key: str | None
    name: str
    size: int | None = None


class Names:
    """Unique names, compared case-insensitively (unzip on macOS or Windows would
    otherwise write one file over another): a second ``a.mp4`` becomes ``a (2).mp4``."""

    def __init__(self) -> None:
        self.taken: set[str] = {MANIFEST_NAME}

    def claim(self, folder: str, filename: str) -> str:
        path = PurePosixPath(filename)
        stem, suffix = (path.stem, path.suffix) if path.suffix else (filename, "")
        candidate, n = filename, 1
        while f"{folder}/{candidate}".casefold() in self.taken:
            n += 1
            candidate = f"{stem} ({n}){suffix}"
        name = f"{folder}/{candidate}"
        self.taken.add(name.casefold())
        return name


def plan_entries(
    videos: Iterable[VideoDetailResponse], target: str, include_thumbnails: bool
) -> list[Entry]:
    """The ZIP's entries, in the videos' order: ``<pin name>/<uploaded_at>_<filename>``,
    with the proxy named ``.mp4`` (what it is), and the thumbnail beside its video."""
    names = Names()
    entries: list[Entry] = []
    for video in videos:
        folder = safe_component(video.pin_name or "", "no pin")
        filename = safe_component(video.original_filename, str(video.id))
        if target == "proxy":
            filename = _with_suffix(filename, ".mp4")
        base = f"{stamp(video.uploaded_at)}_{filename}"
        key = video.proxy_path if target == "proxy" else video.original_path
        entries.append(Entry(video, "video", key, names.claim(folder, base)))
        if include_thumbnails:
            thumb = f"{stamp(video.uploaded_at)}_{_with_suffix(filename, '.jpg')}"
            entries.append(
                Entry(video, "thumbnail", video.thumbnail_path, names.claim(folder, thumb))
            )
    return entries


def _csv_cell(value: str) -> str:
    # A cell a spreadsheet would run as a formula is written as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def manifest(entries: Iterable[Entry]) -> bytes:
    """One row per entry planned, ``missing`` for an object that was not there."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    for entry in entries:
        video = entry.video
        writer.writerow(
            [
                str(video.id),
                _csv_cell(entry.name),
                entry.kind,
                "" if entry.size is None else entry.size,
                video.uploaded_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                ""
                if video.recorded_at is None
                else video.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                str(video.mall_id),
                "" if video.pin_id is None else str(video.pin_id),
                "ok" if entry.size is not None else "missing",
            ]
        )
    return out.getvalue().encode("utf-8")


def build_zip(
    entries: list[Entry], read: Callable[[str, int], Iterable[bytes]]
) -> zipstream.ZipStream:
    """The archive, not yet written: each present entry reads its object only when the
    writer reaches it; ``len()`` of the result is its exact size."""
    archive = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    for entry in entries:
        if entry.size is not None and entry.key is not None:
            archive.add(_lazy(read, entry.key, entry.size), entry.name, size=entry.size)
    archive.add(manifest(entries), MANIFEST_NAME)
    return archive


def _lazy(read: Callable[[str, int], Iterable[bytes]], key: str, size: int) -> Iterator[bytes]:
    # A generator: nothing is asked of S3 until the writer reaches this entry.
    yield from read(key, size)


def part_size_for(total_bytes: int) -> int:
    """8 MiB, or the whole MiB that keeps ``total_bytes`` within 10,000 parts."""
    needed = math.ceil(total_bytes / MAX_PARTS / MIB) * MIB
    return max(DEFAULT_PART_SIZE, MIN_PART_SIZE, needed)


class PartWriter:
    """Bytes in, parts of ``part_size`` out to a multipart upload: ``in_flight`` parts
    uploading while the next fills, so at most ``in_flight + 1`` parts are held.
    ``after_part(parts, bytes)`` runs once each part is in, in order (the run's
    heartbeat and its chance to stop)."""

    def __init__(
        self,
        store: ArchiveStore,
        key: str,
        upload_id: str,
        part_size: int,
        after_part: Callable[[int, int], None],
        in_flight: int = 1,
    ) -> None:
        self.store = store
        self.key = key
        self.upload_id = upload_id
        self.part_size = part_size
        self.after_part = after_part
        self.buffer = bytearray()
        self.etags: list[str] = []
        self.uploaded = 0
        self.sent = 0
        self.in_flight = max(1, in_flight)
        self._pool = ThreadPoolExecutor(
            max_workers=self.in_flight, thread_name_prefix="export-part"
        )
        self._pending: deque[tuple[Future[str], int]] = deque()

    def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        while len(self.buffer) >= self.part_size:
            part = bytes(memoryview(self.buffer)[: self.part_size])
            del self.buffer[: self.part_size]
            self._send(part)

    def close(self) -> list[str]:
        """Send what is left (the last part may be short) and wait: every ETag, in order."""
        if self.buffer or self.sent == 0:
            part, self.buffer = bytes(self.buffer), bytearray()
            self._send(part)
        while self._pending:
            self._wait_oldest()
        self._pool.shutdown(wait=True)
        return self.etags

    def discard(self) -> None:
        """Stop: wait for the parts in flight (their outcome no longer matters)."""
        while self._pending:
            self._pending.popleft()[0].exception()
        self._pool.shutdown(wait=True)
        self.buffer = bytearray()

    def _send(self, part: bytes) -> None:
        while len(self._pending) >= self.in_flight:
            self._wait_oldest()
        self.sent += 1
        future = self._pool.submit(
            self.store.upload_part, self.key, self.upload_id, self.sent, part
        )
        self._pending.append((future, len(part)))

    def _wait_oldest(self) -> None:
        future, length = self._pending.popleft()
        self.etags.append(future.result())
        self.uploaded += length
        self.after_part(len(self.etags), self.uploaded)
