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
  GetObject stream (read a few chunks ahead by a thread of its own) through the ZIP
  writer into the chunks of one part, uploaded while the next fills: at most the parts
  in flight, the one filling and the read-ahead chunks are held, whatever the export's
  size.
- Entries are stored, not deflated: videos and JPEGs are compressed already, and a CRC
  computed while streaming is all a stored entry needs.
"""

from __future__ import annotations

import csv
import io
import math
import queue
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import zipstream

from handlers.ports import ArchiveStore, UploadedPart
from schemas.responses import VideoDetailResponse

MIB = 1024 * 1024
# S3's bounds: parts of at least 5 MiB (but the last), at most 10,000 of them.
MIN_PART_SIZE = 5 * MIB
DEFAULT_PART_SIZE = 8 * MIB
MAX_PARTS = 10_000
# How much of an object one read asks for.
READ_CHUNK = MIB
# Read chunks held ahead of the writer by the reading thread.
READ_AHEAD_CHUNKS = 4
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


def present(entries: Iterable[Entry]) -> list[Entry]:
    """The entries whose object is there to read, in the ZIP's order."""
    return [entry for entry in entries if entry.key is not None and entry.size is not None]


def build_zip(
    entries: list[Entry], read: Callable[[str, int], Iterable[bytes]]
) -> zipstream.ZipStream:
    """The archive, not yet written: each present entry reads its object only when the
    writer reaches it; ``len()`` of the result is its exact size."""
    archive = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    for entry in present(entries):
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
        # The chunks of the part being filled, kept as given: a part is joined once.
        self._chunks: deque[bytes | memoryview] = deque()
        self._held = 0
        self.parts: list[UploadedPart] = []
        self.uploaded = 0
        self.sent = 0
        self.in_flight = max(1, in_flight)
        self._pool = ThreadPoolExecutor(
            max_workers=self.in_flight, thread_name_prefix="export-part"
        )
        self._pending: deque[tuple[Future[UploadedPart], int]] = deque()

    def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._held += len(chunk)
        while self._held >= self.part_size:
            self._send(self._take(self.part_size))

    def _take(self, size: int) -> bytes:
        pieces: list[bytes | memoryview] = []
        need = size
        while need:
            chunk = self._chunks[0]
            if len(chunk) <= need:
                pieces.append(self._chunks.popleft())
                need -= len(chunk)
            else:
                view = memoryview(chunk)
                pieces.append(view[:need])
                self._chunks[0] = view[need:]
                need = 0
        self._held -= size
        return b"".join(pieces)

    def close(self) -> list[UploadedPart]:
        """Send what is left (the last part may be short) and wait: every part, in order."""
        if self._held or self.sent == 0:
            self._send(self._take(self._held))
        while self._pending:
            self._wait_oldest()
        self._pool.shutdown(wait=True)
        return self.parts

    def discard(self) -> None:
        """Stop: wait for the parts in flight (their outcome no longer matters)."""
        while self._pending:
            self._pending.popleft()[0].exception()
        self._pool.shutdown(wait=True)
        self._chunks.clear()
        self._held = 0

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
        self.parts.append(future.result())
        self.uploaded += length
        self.after_part(len(self.parts), self.uploaded)


class _End:
    """The end of one object's bytes in a read-ahead queue."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead:
    """The entries' objects read in order by a thread of their own, up to ``chunks``
    read chunks ahead of the writer: the next object's GET is under way while the
    writer frames, checksums and uploads the current one, as one thread doing both
    could not. ``read`` hands them out in the same order, with the same signature as
    the store's; an error of the reading thread is raised in the writer's.

    At most ``chunks`` chunks are held, however large the export."""

    def __init__(
        self,
        read: Callable[[str, int], Iterable[bytes]],
        objects: Iterable[tuple[str, int]],
        chunks: int,
    ) -> None:
        self._read = read
        self._objects = list(objects)
        self._order = deque(key for key, _ in self._objects)
        self._queue: queue.Queue[bytes | _End | _Failed] = queue.Queue(maxsize=max(1, chunks))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="export-read", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | _End | _Failed) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for key, size in self._objects:
                stream = iter(self._read(key, size))
                try:
                    for chunk in stream:
                        if not self._put(chunk):
                            return
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()  # a generator's ``finally`` closes its GET stream
                if not self._put(_End()):
                    return
        except BaseException as exc:  # handed to the writer's thread, which raises it
            self._put(_Failed(exc))

    def read(self, key: str, size: int) -> Iterator[bytes]:
        expected = self._order.popleft() if self._order else None
        if expected != key:
            raise RuntimeError(f"objects read out of order: {key!r}, expected {expected!r}")
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the reading thread (its GET stream is closed as it stops) and wait."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)
