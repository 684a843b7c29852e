"""Domain errors. Each maps to one envelope code at the task boundary."""

from __future__ import annotations


class VideoError(Exception):
    """Base of the errors a handler raises on purpose; the message is the envelope's detail."""

    code = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(VideoError):
    code = "not_found"

    @classmethod
    def video(cls, video_id: object) -> NotFound:
        return cls(f"Video {video_id} not found")


class NotAvailable(VideoError):
    code = "not_available"


class InvalidRequest(VideoError):
    code = "invalid_request"

    def __init__(self, detail: str, fields: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.fields = fields or []


class Unavailable(VideoError):
    """A dependency (Postgres, S3) could not be reached; worth retrying later."""

    code = "unavailable"


class DatabaseUnavailable(Unavailable):
    pass


class StorageUnavailable(Unavailable):
    pass


class StatementTimeout(VideoError):
    """A statement ran past the task's budget and the database cancelled it: asking
    again the same way would time out again, so it is answered, not retried."""

    code = "timeout"


PROXY_NOT_AVAILABLE = "Proxy video not available (still processing or failed)"
THUMBNAIL_NOT_AVAILABLE = "Thumbnail not available (still processing)"


class WrongPassword(VideoError):
    """A share's password missing or wrong."""

    code = "forbidden"


class TooManyAttempts(VideoError):
    """A share refusing every password until its window of attempts has passed."""

    code = "too_many_attempts"
