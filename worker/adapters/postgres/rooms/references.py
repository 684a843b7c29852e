"""References: which object keys a row still names, so that no file a row needs is
removed from the bucket."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, literal_column, select, union_all

from worker.adapters.postgres.rooms.query import videos

KEY_COLUMNS = (videos.c.original_path, videos.c.proxy_path, videos.c.thumbnail_path)


class PostgresReferences:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        key_list = list(set(keys))
        found: set[str] = set()
        for column in KEY_COLUMNS:
            found.update(
                self.connection.execute(
                    select(column).where(column.in_(key_list)).distinct()
                ).scalars()
            )
        return found

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        parts = [
            select(column.label("k")).where(
                column.is_not(None), column.startswith(prefix, autoescape=True)
            )
            for column in KEY_COLUMNS
        ]
        keys = union_all(*parts).subquery()
        # Byte order, as S3 lists keys; the collation must be in the select list for DISTINCT.
        stmt = select(keys.c.k.collate("C").label("k")).distinct().order_by(literal_column("k"))
        result = self.connection.execution_options(stream_results=True, yield_per=2000).execute(
            stmt
        )
        for (key,) in result:
            yield key
