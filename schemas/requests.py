"""Task kwargs, validated at the edge.

Each model is the exact keyword-argument set of one contract task: unknown keys are
rejected (``extra="forbid"``), ints and bools are strict (``"2"`` is not a page,
``1`` is not ``true``), UUIDs travel as strings and datetimes must carry an offset.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.responses import as_utc

STATUSES = ("pending", "processing", "completed", "failed")
TARGETS = ("proxy", "original", "thumbnail")


def _uuid_text(value: Any) -> Any:
    # Lax UUID parsing would also take 16 raw bytes or an int-like; the contract says strings.
    if isinstance(value, str | UUID):
        return value
    raise PydanticCustomError("uuid_type", "Input should be a UUID string")


def _iso_datetime(value: Any) -> Any:
    # Lax datetime parsing takes numbers as Unix time; the contract says ISO 8601 strings.
    if isinstance(value, str | datetime):
        return value
    raise PydanticCustomError(
        "datetime_type", "Input should be an ISO 8601 datetime string with an offset"
    )


def _one_of(name: str, allowed: tuple[str, ...]):
    def check(value: Any) -> Any:
        if value not in allowed:
            raise PydanticCustomError(
                f"invalid_{name}", f"Invalid {name}: must be {'|'.join(allowed)}"
            )
        return value

    return BeforeValidator(check)


Id = Annotated[UUID, BeforeValidator(_uuid_text)]
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_datetime), AfterValidator(as_utc)]
Status = Annotated[
    Literal["pending", "processing", "completed", "failed"], _one_of("processing_status", STATUSES)
]
Target = Annotated[Literal["proxy", "original", "thumbnail"], _one_of("target", TARGETS)]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refused here, not by the driver mid-query.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "Text must not contain NUL characters")
    return value


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise PydanticCustomError("duplicates", "Each value may appear only once")
    return values


# A search needs a run of this many letters or digits: what the trigram indexes can
# look up. Without one (``P2``, ``%%``), every row would be read and rechecked.
SEARCH_RUN = 3
SEARCH_TOO_SHORT = f"needs at least {SEARCH_RUN} letters or digits in a row"


def _searchable(value: str) -> str:
    run = 0
    for ch in value:
        run = run + 1 if ch.isalnum() else 0
        if run >= SEARCH_RUN:
            return value
    raise PydanticCustomError("search_too_short", SEARCH_TOO_SHORT)


# A search term: a substring of the file name or the notes; % _ and \ match themselves.
SearchText = Annotated[
    StrictStr,
    Field(min_length=1, max_length=200),
    AfterValidator(_no_nul),
    AfterValidator(_searchable),
]
Targets = Annotated[list[Target], Field(min_length=1, max_length=3), AfterValidator(_distinct)]
ExpiresMinutes = Annotated[StrictInt, Field(ge=5, le=1440)]
BatchSize = Annotated[StrictInt, Field(ge=1, le=1000)]

# A tag's name: at most this many characters once normalised.
TAG_NAME_MAX = 64
# Control, format, surrogate, private-use and unassigned code points: a name that holds
# one prints differently from what it is (a right-to-left override, a NUL, a
# zero-width space). The zero-width joiner stays: emoji sequences are made with it.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_JOINER = "\u200d"


def _bad_tag(name: str, reason: str) -> PydanticCustomError:
    shown = repr(name)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return PydanticCustomError("tag_name", f"Invalid tag name {shown}: {reason}")


def tag_name(value: str) -> str:
    """A tag's name as stored and compared: NFKC (so a full-width "ＡＢＣ" and "ABC", or
    the ligature "ﬁ" and "fi", are one name), trimmed, runs of whitespace one space. One
    string, never a list packed into one field: a name holds no comma-separated others,
    it is simply a name, and each tag is a row of its own."""
    normalised = " ".join(unicodedata.normalize("NFKC", value).split())
    if not normalised:
        raise _bad_tag(value, "empty once whitespace is trimmed")
    if len(normalised) > TAG_NAME_MAX:
        raise _bad_tag(value, f"longer than {TAG_NAME_MAX} characters")
    for ch in normalised:
        if ch != _JOINER and unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            raise _bad_tag(value, f"holds the control character U+{ord(ch):04X}")
    return normalised


def _distinct_names(names: list[str]) -> list[str]:
    # Compared as PostgreSQL's lower() compares them: one name, whatever its case.
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


TagName = Annotated[StrictStr, AfterValidator(tag_name)]
TagNames = Annotated[list[TagName], AfterValidator(_distinct_names)]


AUTH_KWARG_SCHEMA = {
    "type": "string",
    "description": (
        "A compact JWT (AUTH_MODE=jwt: required on every task; off: accepted and ignored). "
        "The worker takes it out before these kwargs are validated and never stores it."
    ),
}


def _documents_auth(schema: dict[str, Any]) -> None:
    # The task edge pops ``auth`` before validation, so the model never holds the token;
    # the schema still lists it, as callers must send it.
    schema.setdefault("properties", {})["auth"] = AUTH_KWARG_SCHEMA


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_documents_auth)


class VideoFilters(BaseModel):
    """The filters of ``videos.list``, which ``videos.bulk_delete`` takes as an object."""

    # Command's rules, without its ``auth`` property: nested, it is no task's kwargs.
    model_config = ConfigDict(extra="forbid", frozen=True)

    mall_id: Id | None = None
    pin_id: Id | None = None
    processing_status: Status | None = None
    has_proxy: StrictBool | None = None
    uploaded_after: Instant | None = None
    uploaded_before: Instant | None = None
    # Case-insensitive substring of original_filename or operator_notes.
    q: SearchText | None = None
    # Videos carrying every one of these tags (names compared case-insensitively).
    tags: Annotated[TagNames, Field(min_length=1, max_length=10)] | None = None

    @model_validator(mode="after")
    def _range_is_forward(self) -> VideoFilters:
        if (
            self.uploaded_after is not None
            and self.uploaded_before is not None
            and self.uploaded_after >= self.uploaded_before
        ):
            raise PydanticCustomError(
                "date_range", "uploaded_after must be earlier than uploaded_before"
            )
        return self

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in VideoFilters.model_fields)


class ListVideos(VideoFilters):
    model_config = ConfigDict(json_schema_extra=_documents_auth)

    page: StrictInt = Field(default=1, ge=1)
    page_size: StrictInt = Field(default=20, ge=1, le=100)
    # The next_cursor of a page of the same listing: the page after it, by keyset.
    cursor: Annotated[StrictStr, Field(min_length=1, max_length=512)] | None = None
    # True: only the trash, whose items add trashed_at and purge_after.
    trashed: StrictBool = False
    # Targets to presign for every item of the page (a gallery in one message).
    sign: Targets | None = None
    sign_expires_minutes: ExpiresMinutes = 60


class GetVideo(Command):
    video_id: Id


class SignUrl(Command):
    video_id: Id
    target: Target = "proxy"
    expires_minutes: ExpiresMinutes = 60


class SignUrls(Command):
    video_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]
    target: Target = "proxy"
    expires_minutes: ExpiresMinutes = 60


class DeleteVideo(Command):
    video_id: Id
    delete_files: StrictBool = True
    # True: into the trash (row kept, files untouched) until TRASH_DAYS have passed.
    trash: StrictBool = False


class RestoreVideo(Command):
    video_id: Id


class BulkDelete(Command):
    """Exactly one of ``video_ids`` or ``filters``: nothing is never "everything"."""

    video_ids: Annotated[list[Id], Field(min_length=1, max_length=1000)] | None = None
    filters: VideoFilters | None = None
    trash: StrictBool = False
    delete_files: StrictBool = True
    dry_run: StrictBool = False
    batch_size: BatchSize = 500

    @model_validator(mode="after")
    def _one_selection(self) -> BulkDelete:
        if (self.video_ids is None) == (self.filters is None):
            raise PydanticCustomError("selection", "Give exactly one of video_ids or filters")
        if self.filters is not None and self.filters.is_empty():
            raise PydanticCustomError("empty_filters", "filters must name at least one filter")
        return self


class GetStats(Command):
    mall_id: Id | None = None
    pin_id: Id | None = None
    # True: the data adds ``pins``, per-pin figures, largest storage first.
    by_pin: StrictBool = False


class RefreshStats(Command):
    mall_id: Id | None = None


class SweepRetention(Command):
    # None means "the worker's RETENTION_DAYS", resolved by the handler.
    older_than_days: StrictInt | None = Field(default=None, ge=1, le=36500)
    mall_id: Id | None = None
    batch_size: BatchSize = 500
    dry_run: StrictBool = False
    delete_files: StrictBool = True


class FlushStaleStats(Command):
    """Internal: refresh the scopes deletes marked stale (queued by the worker itself)."""


class PurgeStorage(Command):
    limit: StrictInt = Field(default=1000, ge=1, le=100_000)
    # False: every queued key now, whatever its backoff (S3 just came back).
    due_only: StrictBool = True


# Operator commands (``videoworker retention`` and ``videoworker hold``): not tasks of
# the message contract, but validated by the same rules at the same edge.
class SetRetention(Command):
    """A mall's own period and/or storage quota; what is not given is left as it was."""

    mall_id: Id
    days: StrictInt | None = Field(default=None, ge=1, le=36500)
    # Originals plus proxies the mall may keep; the sweep deletes its oldest beyond it.
    max_storage_bytes: StrictInt | None = Field(default=None, ge=1, le=2**63 - 1)

    @model_validator(mode="after")
    def _something_to_set(self) -> SetRetention:
        if self.days is None and self.max_storage_bytes is None:
            raise PydanticCustomError("nothing_to_set", "Give days, max_storage_bytes or both")
        return self


class ClearRetention(Command):
    mall_id: Id


class SetLegalHold(Command):
    video_id: Id
    held: StrictBool = True


# Contract v1.2: tags and share links.
class TagVideos(Command):
    """Add and remove tags on videos; a pair already there (or already gone) is left as
    it is, so the same message twice changes nothing the second time."""

    video_ids: Annotated[list[Id], Field(min_length=1, max_length=1000)]
    add: Annotated[TagNames, Field(max_length=20)] = []
    remove: Annotated[TagNames, Field(max_length=20)] = []

    @model_validator(mode="after")
    def _something_to_do(self) -> TagVideos:
        if not self.add and not self.remove:
            raise PydanticCustomError("nothing_to_do", "Give add, remove or both")
        both = {n.lower() for n in self.add} & {n.lower() for n in self.remove}
        if both:
            raise PydanticCustomError(
                "add_and_remove",
                "A tag cannot be both added and removed: {names}",
                {"names": ", ".join(sorted(both))},
            )
        return self


class ListTags(Command):
    mall_id: Id | None = None
    # Names starting with this (case-insensitively), as a search box completes them.
    prefix: Annotated[StrictStr, Field(min_length=1, max_length=TAG_NAME_MAX)] | None = None
    limit: StrictInt = Field(default=100, ge=1, le=200)


SHARE_PASSWORD_MIN, SHARE_PASSWORD_MAX = 8, 128
SHARE_DEFAULT_MINUTES = 10080
SharePassword = Annotated[
    StrictStr,
    Field(min_length=SHARE_PASSWORD_MIN, max_length=SHARE_PASSWORD_MAX),
    AfterValidator(_no_nul),
]


class CreateShare(Command):
    """A link to these videos for someone without an account. The upper bound of
    ``expires_in_minutes`` is the worker's ``SHARE_MAX_MINUTES``, checked by the handler:
    a link never lives for ever, and never longer than the operator allows."""

    video_ids: Annotated[list[Id], Field(min_length=1, max_length=100), AfterValidator(_distinct)]
    expires_in_minutes: StrictInt = Field(default=SHARE_DEFAULT_MINUTES, ge=5)
    targets: Targets = ["proxy", "thumbnail"]
    password: SharePassword | None = None
    max_views: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    label: Annotated[StrictStr, Field(max_length=200), AfterValidator(_no_nul)] | None = None


class ResolveShare(Command):
    """The token is the credential (no ``auth``). Its shape is judged by the handler, not
    here: a token of the wrong length is answered as an unknown one, never as a bad
    request that would tell a guesser what a token looks like."""

    token: StrictStr
    # Compared with the share's hash; a share without a password ignores it.
    password: Annotated[StrictStr, Field(max_length=4096)] | None = None


class RevokeShare(Command):
    share_id: Id


class ListShares(Command):
    video_id: Id | None = None
    # False: only links that still open (not expired, revoked or used up).
    include_expired: StrictBool = False
    page: StrictInt = Field(default=1, ge=1)
    page_size: StrictInt = Field(default=20, ge=1, le=100)


# Export as ZIP.
EXPORT_NAME_MAX = 100
ExportName = Annotated[
    StrictStr, Field(min_length=1, max_length=EXPORT_NAME_MAX), AfterValidator(_no_nul)
]


class ExportVideos(Command):
    """Exactly one of ``video_ids`` or ``filters`` (as ``videos.bulk_delete``): one ZIP of
    the videos the caller sees, streamed from S3 into S3 by a task of its own."""

    video_ids: (
        Annotated[list[Id], Field(min_length=1, max_length=1000), AfterValidator(_distinct)] | None
    ) = None
    filters: VideoFilters | None = None
    target: Annotated[Literal["proxy", "original"], _one_of("target", ("proxy", "original"))] = (
        "proxy"
    )
    include_thumbnails: StrictBool = False
    # The ZIP's file name (without .zip); made safe for a key and a download.
    name: ExportName | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> ExportVideos:
        if (self.video_ids is None) == (self.filters is None):
            raise PydanticCustomError("selection", "Give exactly one of video_ids or filters")
        if self.filters is not None and self.filters.is_empty():
            raise PydanticCustomError("empty_filters", "filters must name at least one filter")
        return self


class ExportStatus(Command):
    export_id: Id
    expires_minutes: ExpiresMinutes = 60


class CancelExport(Command):
    export_id: Id


class RunExport(Command):
    """Internal: build the export's ZIP (queued by ``videos.export`` and by the sweep
    that takes up an export whose worker was lost)."""

    export_id: Id


class SweepExports(Command):
    """Internal, from beat: take up exports whose worker was lost, abort multipart uploads
    nobody will complete, and expire old exports."""


# Contract v1.2: re-processing.
REPROCESS_TARGETS = ("proxy", "thumbnail")
ReprocessTarget = Annotated[Literal["proxy", "thumbnail"], _one_of("target", REPROCESS_TARGETS)]


class Reprocess(Command):
    """Exactly one of ``video_ids`` or ``filters``, as ``videos.bulk_delete`` takes them."""

    video_ids: Annotated[list[Id], Field(min_length=1, max_length=1000)] | None = None
    filters: VideoFilters | None = None
    targets: Annotated[
        list[ReprocessTarget], Field(min_length=1, max_length=2), AfterValidator(_distinct)
    ] = ["proxy", "thumbnail"]
    dry_run: StrictBool = False
    # What a continuation carries: only videos with an id above this one (the run before
    # it took those up to it, in id order). A caller leaves it out.
    after: Id | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> Reprocess:
        if (self.video_ids is None) == (self.filters is None):
            raise PydanticCustomError("selection", "Give exactly one of video_ids or filters")
        if self.filters is not None and self.filters.is_empty():
            raise PydanticCustomError("empty_filters", "filters must name at least one filter")
        return self


# Contract v1.2: analytics.
def _iso_date(value: Any) -> Any:
    # Lax date parsing takes numbers as Unix time; the contract says ISO dates.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        return value
    raise PydanticCustomError("date_type", "Input should be an ISO 8601 date string")


Day = Annotated[date, BeforeValidator(_iso_date)]
ANALYTICS_MAX_DAYS = 366
ANALYTICS_DEFAULT_DAYS = 30


class GetAnalytics(Command):
    """Both days inclusive; left out, the last 30 days ending today (UTC)."""

    mall_id: Id | None = None
    pin_id: Id | None = None
    video_id: Id | None = None
    from_day: Day | None = None
    to_day: Day | None = None
    top: StrictInt = Field(default=10, ge=0, le=100)

    @model_validator(mode="after")
    def _range(self) -> GetAnalytics:
        if self.from_day is not None and self.to_day is not None:
            if self.from_day > self.to_day:
                raise PydanticCustomError("day_range", "from_day must not be after to_day")
            if (self.to_day - self.from_day).days + 1 > ANALYTICS_MAX_DAYS:
                raise PydanticCustomError(
                    "day_range", f"A range spans at most {ANALYTICS_MAX_DAYS} days"
                )
        return self


class FlushAnalytics(Command):
    """Internal, from beat: fold the URL counts buffered in Redis into PostgreSQL."""


class IngestAccessLogs(Command):
    """Internal, from beat: add the bytes S3's server access logs say were served."""
