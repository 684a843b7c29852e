"""Share links: a link to some videos for someone without an account.

What comparable tools got wrong, and what this does instead:

- The token is never stored, only its SHA-256; the password never, only its Argon2id
  hash. A plain hash is enough for the token: it is 256 random bits from ``secrets``,
  so no dictionary or brute force can find a preimage, and a leaked ``shares`` table
  gives no link away. A keyed hash (HMAC with a worker key) would add a defence only
  for a low-entropy secret, which the password is and gets Argon2id for; it would also
  add a key to deploy and rotate, without which every link would break.
- Every answer of a resolve mints fresh short URLs (``SHARE_URL_MINUTES``, never past
  the link's expiry) for the targets the link names and nothing else: there is no
  other door to the files (no thumbnail path that skips the password check).
- Every link expires (default a week, at most ``SHARE_MAX_MINUTES``), and the expiry a
  caller chooses is the expiry stored, to the second.
- Password guesses are limited per link (``SHARE_MAX_ATTEMPTS`` per window, counted in
  PostgreSQL before each check, so racing guesses cannot slip past the limit and a
  restart forgets nothing).
- Unknown, expired, revoked, used up, or not even shaped like a token: one answer,
  ``Share not found``, after the same look-up.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from handlers import analytics
from handlers.deps import Deps
from handlers.errors import InvalidRequest, NotFound, TooManyAttempts, WrongPassword
from handlers.ports import SHARE_VIEW, NewShare, StoredShare
from handlers.urls import gallery_urls, signing_time
from schemas.events import ShareCreatedData, ShareRevokedData, ShareViewedData
from schemas.requests import CreateShare, ListShares, ResolveShare, RevokeShare
from schemas.responses import (
    ShareCreated,
    SharedVideo,
    ShareList,
    ShareResolved,
    ShareRevoked,
)

SHARE_NOT_FOUND = "Share not found"
WRONG_PASSWORD = "Wrong password"
# A fixed head, as API keys carry one: the log redactor and secret scanners find a
# token by it (``worker.logs.SHARE_TOKEN``). The rest is 32 bytes from ``secrets``.
TOKEN_PREFIX = "vws_"
TOKEN_BYTES = 32
TOKEN_SHAPE = re.compile(r"vws_[A-Za-z0-9_-]{43}")
# Looked up in place of a token of the wrong shape, so that it costs what an unknown
# token costs; its hash is in no row (no token is ever made of this text).
UNUSABLE_TOKEN = TOKEN_PREFIX + "-" * 43
ATTEMPT_WINDOW = timedelta(minutes=15)
# Argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 3 passes over
# 64 MiB, 4 lanes); the parameters travel in each hash, so raising them later leaves
# every stored hash verifiable.
PASSWORDS = PasswordHasher()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _password_matches(stored: str, given: str | None) -> bool:
    if given is None:
        return False
    try:
        return PASSWORDS.verify(stored, given)
    except (VerificationError, InvalidHashError):
        return False


def _opens(share: StoredShare, now: datetime) -> bool:
    return (
        share.revoked_at is None
        and share.expires_at > now
        and (share.max_views is None or share.views < share.max_views)
    )


def _missing(video_ids: list[uuid.UUID]) -> NotFound:
    if len(video_ids) == 1:
        return NotFound.video(video_ids[0])
    return NotFound(f"Videos {', '.join(str(i) for i in video_ids)} not found")


def create_share(cmd: CreateShare, deps: Deps) -> ShareCreated:
    """A link to videos the caller sees, none of them in the trash. The answer is the
    only place the token ever appears."""
    longest = deps.policy.share_max_minutes
    if cmd.expires_in_minutes > longest:
        msg = f"Input should be less than or equal to {longest} (SHARE_MAX_MINUTES)"
        raise InvalidRequest(
            f"expires_in_minutes: {msg}", [{"loc": ["expires_in_minutes"], "msg": msg}]
        )
    token = new_token()
    # Hashed before the transaction: Argon2id takes tens of milliseconds on purpose.
    password_hash = PASSWORDS.hash(cmd.password) if cmd.password is not None else None
    now = deps.clock()
    expires_at = now + timedelta(minutes=cmd.expires_in_minutes)
    with deps.uow() as uow:
        found = uow.catalogue.get_many(deps.scope, cmd.video_ids)
        missing = [video_id for video_id in cmd.video_ids if video_id not in found]
        if missing:
            raise _missing(missing)
        shared = [found[video_id] for video_id in cmd.video_ids]
        share = NewShare(
            id=uuid.uuid4(),
            token_hash=token_hash(token),
            password_hash=password_hash,
            created_by=deps.scope.subject,
            created_at=now,
            expires_at=expires_at,
            max_views=cmd.max_views,
            label=cmd.label,
            targets=list(cmd.targets),
            video_ids=list(cmd.video_ids),
            mall_ids=sorted({video.mall_id for video in shared}),
            pin_ids=sorted({video.pin_id for video in shared}),
        )
        uow.shares.create(share)
        uow.events.add(
            [
                ShareCreatedData(
                    share_id=share.id,
                    created_by=share.created_by,
                    expires_at=expires_at,
                    targets=share.targets,
                    video_ids=share.video_ids,
                    max_views=share.max_views,
                    has_password=password_hash is not None,
                )
            ]
        )
        uow.commit()
    deps.log.info("share.created", extra={"share_id": str(share.id), "videos": len(shared)})
    return ShareCreated(
        share_id=share.id,
        token=token,
        expires_at=expires_at,
        targets=share.targets,
        video_count=len(shared),
    )


def resolve_share(cmd: ResolveShare, deps: Deps) -> ShareResolved:
    """The link's videos with fresh short URLs, counting one view.

    Whatever makes a link unusable is answered ``Share not found``, the same words for
    each; a token of the wrong shape is looked up like any other (as ``UNUSABLE_TOKEN``)
    so that its answer takes as long. A password is checked only after the attempt is
    counted and committed: guesses sent at once still count one by one.
    """
    now = deps.clock()
    shaped = TOKEN_SHAPE.fullmatch(cmd.token) is not None
    digest = token_hash(cmd.token if shaped else UNUSABLE_TOKEN)
    with deps.uow() as uow:
        share = uow.shares.by_token_hash(digest)
        if (
            share is None
            or not hmac.compare_digest(share.token_hash, digest)
            or not shaped
            or not _opens(share, now)
        ):
            raise NotFound(SHARE_NOT_FOUND)
        if share.password_hash is not None:
            attempts = uow.shares.note_attempt(share.id, now, ATTEMPT_WINDOW)
            uow.commit()
            if attempts > deps.policy.share_max_attempts:
                deps.log.warning("share.attempts_exceeded", extra={"share_id": str(share.id)})
                raise TooManyAttempts(
                    "Too many wrong passwords for this share; try again in 15 minutes"
                )
            if not _password_matches(share.password_hash, cmd.password):
                deps.log.info("share.wrong_password", extra={"share_id": str(share.id)})
                raise WrongPassword(WRONG_PASSWORD)
            uow.shares.forgive_attempt(share.id)
        viewed = uow.shares.count_view(share.id, now)
        if viewed is None:
            # Revoked, expired or used up by another open meanwhile.
            raise NotFound(SHARE_NOT_FOUND)
        videos = viewed.videos
        uow.events.add(
            [
                ShareViewedData(
                    share_id=share.id, views=viewed.views, video_ids=[v.id for v in videos]
                )
            ]
        )
        uow.commit()
    signed_at = signing_time(deps)
    urls_expire_at = min(
        signed_at + timedelta(minutes=deps.policy.share_url_minutes), viewed.expires_at
    )
    expires_in = int((urls_expire_at - signed_at).total_seconds())
    if expires_in < 1:
        raise NotFound(SHARE_NOT_FOUND)
    deps.log.info("share.resolved", extra={"share_id": str(share.id), "views": viewed.views})
    resolved = ShareResolved(
        share_id=share.id,
        label=viewed.label,
        expires_at=viewed.expires_at,
        urls_expire_at=signed_at + timedelta(seconds=expires_in),
        videos=[
            SharedVideo(
                id=video.id,
                original_filename=video.original_filename,
                duration_seconds=video.duration_seconds,
                uploaded_at=video.uploaded_at,
                recorded_at=video.recorded_at,
                urls=gallery_urls(deps.store, video.files, viewed.targets, expires_in, signed_at),
            )
            for video in videos
        ],
    )
    # Each URL signed, and one view of each video shown.
    analytics.count(
        deps,
        (
            counted
            for video, shown in zip(videos, resolved.videos, strict=True)
            for counted in [
                *analytics.urls_of(video.id, video.mall_id, video.pin_id, shown.urls),
                (video.id, video.mall_id, video.pin_id, SHARE_VIEW),
            ]
        ),
    )
    return resolved


def revoke_share(cmd: RevokeShare, deps: Deps) -> ShareRevoked:
    """Later resolves are ``Share not found``; URLs already handed out live until their
    own short expiry (``SHARE_URL_MINUTES``): a presigned URL cannot be called back."""
    with deps.uow() as uow:
        revoked = uow.shares.revoke(deps.scope, cmd.share_id, deps.clock(), deps.scope.subject)
        if revoked is None:
            raise NotFound(f"Share {cmd.share_id} not found")
        if revoked[1]:
            uow.events.add([ShareRevokedData(share_id=cmd.share_id, revoked_by=deps.scope.subject)])
        uow.commit()
    if revoked[1]:
        deps.log.info("share.revoked", extra={"share_id": str(cmd.share_id)})
    return ShareRevoked(share_id=cmd.share_id, revoked=True)


def list_shares(cmd: ListShares, deps: Deps) -> ShareList:
    with deps.reads() as uow:
        shares, total = uow.shares.page(
            deps.scope, cmd.video_id, cmd.include_expired, deps.clock(), cmd.page, cmd.page_size
        )
    return ShareList(shares=shares, total=total)
