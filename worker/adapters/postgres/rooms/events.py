"""The room ``events``: the outbox table, written in the writer's transaction and read
by the relay.

Writers (``PostgresOutbox``, and the triggers of migration 0012 for the rows other
services write) only insert. The relay (``worker.adapters.relay``) owns the rest, on a
connection of its own, through the statements below: take the unsent rows in id order,
mark them relayed to a sink, hold back a refused one and its subject, prune sent rows.

Why ids are in commit order per subject: every writer draws a subject's ids after it has
locked that subject. A video's events are written after its row was updated or deleted
in the same transaction (the triggers run after the statement; the handlers write after
``uow.removal`` changed the row), and the next writer of that video waits on the row
lock until the first commits, so draws its ids after that commit. A subject with no row
(a mall's statistics, a bulk run, an export) is locked here with a transaction-level
advisory lock on its name before its ids are drawn; a share's events, like a video's,
follow the change to its own row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, text

from schemas.events import EventData

NOTIFY_CHANNEL = "videoworker_events"

# The events as one JSON array, one parameter: as three text arrays, psycopg quoted each
# event's JSON character by character, most of a 1,000-video tagging's time.
INSERT = text(
    """
    WITH written AS (
        INSERT INTO event_outbox (type, subject, data)
        SELECT e.event ->> 'type', e.event ->> 'subject', e.event -> 'data'
        FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS e(event, n)
        ORDER BY e.n
        RETURNING 1
    )
    SELECT pg_notify('videoworker_events', '') FROM (SELECT 1 FROM written LIMIT 1) AS any_row
    """
)

# Subjects in a stable order, so two writers of the same subjects never deadlock.
LOCK_SUBJECTS = text(
    """
    SELECT pg_advisory_xact_lock(hashtextextended('videoworker.events:' || s, 0))
    FROM (SELECT DISTINCT s FROM unnest(CAST(:subjects AS text[])) AS s ORDER BY s) AS ordered
    """
)


# Subjects whose events are written after their own row was inserted or changed in the
# same transaction: that row's lock orders them. A share's too (created with its row,
# viewed after its count went up, revoked after revoked_at was set): a resolve saves the
# advisory lock's round trip.
LOCKED_BY_ROW = ("video.", "share.")


def locked_by_row(event: EventData) -> bool:
    """Whether the event's own row orders it; every other subject is locked by name."""
    return event.event_type.startswith(LOCKED_BY_ROW)


class PostgresOutbox:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, events: Sequence[EventData]) -> None:
        if not events:
            return
        unlocked = sorted({e.subject for e in events if not locked_by_row(e)})
        if unlocked:
            self.connection.execute(LOCK_SUBJECTS, {"subjects": unlocked})
        self.connection.execute(
            INSERT,
            {"events": _json_array(events)},
        )


def _json_array(events: Sequence[EventData]) -> str:
    """The events as the JSON array ``INSERT`` reads, each event's data serialised by
    pydantic straight to JSON (no dictionary of it made in between)."""
    return (
        "["
        + ",".join(
            f'{{"type":{json.dumps(e.event_type)},"subject":{json.dumps(e.subject)},'
            f'"data":{e.model_dump_json(by_alias=True)}}}'
            for e in events
        )
        + "]"
    )


# The relay's statements (psycopg placeholders; run on its own connection).

# Subjects held back: a row of theirs was refused and waits for its retry.
HELD_SUBJECTS = """
SELECT DISTINCT subject FROM event_outbox
WHERE sent_at IS NULL AND retry_at IS NOT NULL AND retry_at > now()
"""

# The next unsent rows for one sink, oldest id first. No cursor: a row that commits
# after a later id was relayed is still unsent, so the next pass takes it.
TAKE = """
SELECT id, event_id, type, subject, time, data::text, attempts
FROM event_outbox
WHERE sent_at IS NULL
  AND relayed & %(bit)s = 0
  AND (retry_at IS NULL OR retry_at <= now())
  AND NOT (subject = ANY(%(held)s))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

MARK_RELAYED = """
UPDATE event_outbox
SET relayed = relayed | %(bit)s,
    sent_at = CASE WHEN (relayed | %(bit)s) & %(all)s = %(all)s THEN now() END,
    retry_at = NULL
WHERE id = ANY(%(ids)s)
"""

HOLD = """
UPDATE event_outbox AS o
SET attempts = o.attempts + 1,
    retry_at = now() + make_interval(secs => least(%(cap)s, 2 ^ least(o.attempts, 20))),
    last_error = h.error
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS h(id, error)
WHERE o.id = h.id
"""

PRUNE = """
DELETE FROM event_outbox
WHERE id IN (
    SELECT id FROM event_outbox
    WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => %(keep)s)
    LIMIT %(limit)s
)
"""

# What waits: unsent rows, and the oldest one's age in seconds (health and the bench).
BACKLOG = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(time)), 0)
FROM event_outbox WHERE sent_at IS NULL
"""
