"""Access scope: who the caller is, what it sees, and which tasks its role may run.

A token is verified once, at the task edge (``worker.runtime.auth``), into a ``Scope``;
the handlers pass it on untouched and the repository's query builder turns it into the
filter of every read and every delete. No handler decides by hand whether a mall or a
pin is allowed: a video outside the scope is simply not found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from schemas.contract import ROLES_OF_TASK, Role


def may_run(role: str, task: str) -> bool:
    """Whether the role may run the task: a column of the task table, so a name not in
    it (a task not written yet, a typo) is refused to every role."""
    return role in ROLES_OF_TASK.get(task, frozenset())


@dataclass(frozen=True, slots=True)
class Scope:
    """What one caller sees: every video (admin), some malls (operator), some pins (tenant).

    ``subject`` is the token's ``sub``, recorded as the actor of every delete; None when
    nobody was asked (``AUTH_MODE=off``, the operator's own CLI).
    """

    role: Role
    malls: frozenset[UUID] = frozenset()
    pins: frozenset[UUID] = frozenset()
    subject: str | None = None

    @classmethod
    def admin(cls, subject: str | None = None) -> Scope:
        return cls(role="admin", subject=subject)

    @classmethod
    def operator(cls, malls: Iterable[UUID], subject: str | None = None) -> Scope:
        return cls(role="operator", malls=frozenset(malls), subject=subject)

    @classmethod
    def tenant(cls, pins: Iterable[UUID], subject: str | None = None) -> Scope:
        return cls(role="tenant", pins=frozenset(pins), subject=subject)

    @property
    def sees_everything(self) -> bool:
        return self.role == "admin"

    def sees(self, mall_id: UUID, pin_id: UUID) -> bool:
        """Whether a video of this mall and pin is visible: the rule the query builder
        writes in SQL, for the fakes and the tests to check it against."""
        if self.role == "admin":
            return True
        if self.role == "operator":
            return mall_id in self.malls
        return pin_id in self.pins

    def malls_within(self, mall_id: UUID | None) -> list[UUID] | None:
        """The malls whose whole figures make up this caller's statistics.

        None when the answer is not a sum of per-mall figures (an admin's, which is the
        mall's or the global figure itself, and a tenant's, which is per pin). A mall
        filter outside an operator's malls leaves nothing: the figure is zero.
        """
        if self.role != "operator":
            return None
        if mall_id is None:
            return sorted(self.malls)
        return [mall_id] if mall_id in self.malls else []


# AUTH_MODE=off, and the operator's own tools: every video, nobody to name as actor.
UNRESTRICTED = Scope.admin()
# A public task's caller (a share's token is its credential): no video of its own.
NOBODY = Scope.tenant(())
