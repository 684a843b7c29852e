"""The result envelope every task returns: exactly one JSON object."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ErrorCode = Literal[
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_available",
    "not_found",
    "unavailable",
    "timeout",
    "too_many_attempts",
    "internal",
]

STATUS_OF: dict[str, int] = {
    "invalid_request": 400,
    # AUTH_MODE=jwt: no valid token (401), or a role that may not run the task (403).
    "unauthorized": 401,
    "forbidden": 403,
    "not_available": 400,
    "not_found": 404,
    "unavailable": 503,
    # v1.2: a statement past its budget, cancelled in PostgreSQL.
    "timeout": 504,
    # v1.2: a share's password failed too often within the window.
    "too_many_attempts": 429,
    "internal": 500,
}


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    detail: str
    fields: list[FieldError] | None = None


class Envelope(BaseModel):
    """``{"ok": true, "status": 200, "data": {...}}`` or ``{"ok": false, ..., "error": {...}}``."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    status: int
    data: dict[str, Any] | None = None
    error: ErrorBody | None = None


def success(data: BaseModel) -> dict[str, Any]:
    return {"ok": True, "status": 200, "data": data.model_dump(mode="json")}


def failure(
    code: ErrorCode, detail: str, fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "detail": detail}
    if fields is not None:
        error["fields"] = fields
    return {"ok": False, "status": STATUS_OF[code], "error": error}
