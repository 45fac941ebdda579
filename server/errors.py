"""API errors: one exception type carrying the HTTP status and the JSON body ``{"error", "detail"}``."""
from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", headers: Optional[dict] = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail = int(status), error, detail
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": self.error, "detail": self.detail}


def user_message(exc: BaseException, paths: dict) -> str:
    """A library error message with server-side paths replaced by neutral names (never leak the layout)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for path, name in sorted(paths.items(), key=lambda kv: -len(str(kv[0]))):
        if path:
            msg = msg.replace(str(path), name)
    return msg
