"""The event outbox: every event is a row written in the transaction of its change.

``event_outbox`` holds each event until the relay has carried it to every sink (the
Redis stream, and the RabbitMQ exchange when the broker is RabbitMQ): ``relayed`` is a
bit per sink, ``sent_at`` is set once all of them have it, and sent rows are pruned
after an hour. A row that a sink refused waits until ``retry_at``, and so does every
later row of its subject (events of one subject go out in order).

The relay never keeps a high-water mark: each pass takes the unsent rows in ``id``
order, so a transaction that drew its ids early and committed late is relayed on the
next pass, never skipped. Ids of one subject are in commit order because every writer
draws them after it has locked the subject's row (an UPDATE or DELETE of the video, or,
for a subject without a row, a transaction-level advisory lock on its name).

Status changes other services make are caught here, so the processing pipeline changes
nothing: a statement-level trigger on ``videos`` (the transition tables the figure
triggers of 0008-0010 already capture) writes ``video.created`` for inserted rows and
``video.status_changed`` for updated rows whose ``processing_status`` changed or whose
proxy or thumbnail appeared or went, with from and to for all three. Each notifies the
relay (``videoworker_events``) only when it wrote a row. Deletes are not caught: the
worker's own deletes write ``video.deleted`` with what they did to the files.

The SQL is the literal text this revision installs, so editing another migration never
changes it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CREATE_TABLE = """
CREATE TABLE event_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_event_outbox PRIMARY KEY,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    type text NOT NULL,
    subject text NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL,
    relayed smallint NOT NULL DEFAULT 0,
    sent_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    retry_at timestamptz,
    last_error text
)"""

# What the relay reads: the unsent rows by id; the subjects held back after a refusal;
# the sent rows by age, for pruning.
CREATE_INDEXES = (
    "CREATE INDEX event_outbox_unsent ON event_outbox (id) WHERE sent_at IS NULL",
    "CREATE INDEX event_outbox_held ON event_outbox (subject) "
    "WHERE sent_at IS NULL AND retry_at IS NOT NULL",
    "CREATE INDEX event_outbox_sent ON event_outbox (sent_at) WHERE sent_at IS NOT NULL",
)

TABLE_COMMENT = (
    "COMMENT ON TABLE event_outbox IS 'Events written in the transaction of their "
    "change, relayed at least once to the stream videos:events (and the exchange "
    "videos.events on RabbitMQ) in id order per subject (migration 0012).'"
)

EVENTS_INSERTED = """
CREATE FUNCTION videoworker_events_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    written bigint;
BEGIN
    INSERT INTO event_outbox (type, subject, data)
    SELECT 'video.created', r.id::text, jsonb_build_object(
        'video_id', r.id,
        'mall_id', r.mall_id,
        'pin_id', r.pin_id,
        'processing_status', r.processing_status,
        'has_proxy', r.proxy_path IS NOT NULL,
        'has_thumbnail', r.thumbnail_path IS NOT NULL,
        'uploaded_at', to_char(r.uploaded_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    FROM new_rows AS r;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM pg_notify('videoworker_events', '');
    END IF;
    RETURN NULL;
END
$$"""

EVENTS_UPDATED = """
CREATE FUNCTION videoworker_events_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    written bigint;
BEGIN
    INSERT INTO event_outbox (type, subject, data)
    SELECT 'video.status_changed', n.id::text, jsonb_build_object(
        'video_id', n.id,
        'mall_id', n.mall_id,
        'pin_id', n.pin_id,
        'processing_status', jsonb_build_object(
            'from', o.processing_status, 'to', n.processing_status),
        'has_proxy', jsonb_build_object(
            'from', o.proxy_path IS NOT NULL, 'to', n.proxy_path IS NOT NULL),
        'has_thumbnail', jsonb_build_object(
            'from', o.thumbnail_path IS NOT NULL, 'to', n.thumbnail_path IS NOT NULL),
        'changed', to_jsonb(array_remove(ARRAY[
            CASE WHEN o.processing_status IS DISTINCT FROM n.processing_status
                 THEN 'processing_status' END,
            CASE WHEN (o.proxy_path IS NULL) <> (n.proxy_path IS NULL)
                 THEN 'has_proxy' END,
            CASE WHEN (o.thumbnail_path IS NULL) <> (n.thumbnail_path IS NULL)
                 THEN 'has_thumbnail' END], NULL)))
    FROM new_rows AS n
    JOIN old_rows AS o ON o.id = n.id
    WHERE o.processing_status IS DISTINCT FROM n.processing_status
       OR (o.proxy_path IS NULL) <> (n.proxy_path IS NULL)
       OR (o.thumbnail_path IS NULL) <> (n.thumbnail_path IS NULL);
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM pg_notify('videoworker_events', '');
    END IF;
    RETURN NULL;
END
$$"""

CREATE_TRIGGERS = (
    "CREATE TRIGGER videos_events_inserted AFTER INSERT ON videos "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_events_inserted()",
    "CREATE TRIGGER videos_events_updated AFTER UPDATE ON videos "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_events_updated()",
)

DROPS = (
    "DROP TRIGGER videos_events_updated ON videos",
    "DROP TRIGGER videos_events_inserted ON videos",
    "DROP FUNCTION videoworker_events_updated()",
    "DROP FUNCTION videoworker_events_inserted()",
    "DROP TABLE event_outbox",
)


def upgrade() -> None:
    op.execute(CREATE_TABLE)
    for statement in CREATE_INDEXES:
        op.execute(statement)
    op.execute(TABLE_COMMENT)
    op.execute(EVENTS_INSERTED)
    op.execute(EVENTS_UPDATED)
    for statement in CREATE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROPS:
        op.execute(statement)
