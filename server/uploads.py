"""Stream a multipart/form-data request body straight into a work folder, enforcing size limits on the fly.

Files are written under server-chosen names (``<field>.upload``); the client's filename is read only to be
ignored. A body over its limit is drained (up to a cap) rather than cut off, so that the client reads the 413
instead of a connection reset; past the cap the connection is closed.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Optional

from python_multipart.multipart import MultipartParser, parse_options_header

from server.errors import ApiError

MAX_FIELD_BYTES = 64 * 1024
DRAIN_CAP = 32 * 1024 * 1024           # read and discard at most this much past a limit
# Part content types accepted for media fields (browsers and curl send these, or nothing).
_MEDIA_PREFIXES = ("audio/", "video/", "image/")   # image/*: a still photo as the template
_GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/mp4", "application/ogg")
# The declared type must fit the field (docs/inputs-frame-rule.md): a file whose declared kind cannot be what the
# field needs (an image/png part as the speech, an audio/* part as the template video) is refused with 415, even
# when its bytes would decode; a generic type (or none) leaves the decision to the bytes.
FIELD_TYPES = {"audio": ("audio/", "video/"),     # speech: an audio file, or a video's sound track
               "video": ("video/", "image/")}     # template: a video, or a still photo


@dataclass
class UploadedFile:
    path: str
    size: int = 0
    content_type: str = ""
    sha256: str = ""


@dataclass
class FormData:
    fields: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def media_type_ok(content_type: str, field_name: str = "") -> bool:
    """Is ``content_type`` acceptable for the file field ``field_name`` (any media kind when the field is not in
    FIELD_TYPES)?"""
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct in _GENERIC_TYPES or ct.startswith(FIELD_TYPES.get(field_name, _MEDIA_PREFIXES))


class _State:
    def __init__(self, work_dir: str, file_limits: dict):
        self.work_dir, self.file_limits = work_dir, file_limits
        self.form = FormData()
        self.error: Optional[ApiError] = None
        self.headers: dict = {}
        self._hname = b""
        self._hvalue = b""
        self.name: str = ""
        self.is_file = False
        self.fh = None
        self.hasher = None
        self.cur: Optional[UploadedFile] = None
        self.buf = bytearray()

    def fail(self, err: ApiError):
        if self.error is None:
            self.error = err
        self.close_file()

    def close_file(self):
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    # python-multipart callbacks
    def on_part_begin(self):
        self.headers, self.name, self.is_file, self.cur = {}, "", False, None
        self.buf = bytearray()

    def on_header_field(self, data, start, end):
        self._hname += data[start:end]

    def on_header_value(self, data, start, end):
        self._hvalue += data[start:end]

    def on_header_end(self):
        self.headers[self._hname.decode("latin-1").lower()] = self._hvalue.decode("latin-1")
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self):
        if self.error:
            return
        disp, opts = parse_options_header(self.headers.get("content-disposition", ""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if disp != b"form-data" or not name:
            return self.fail(ApiError(400, "bad_request", "a multipart part has no form-data name"))
        self.name = name
        self.is_file = b"filename" in opts or name in self.file_limits
        if not self.is_file:
            return
        if name not in self.file_limits:
            return self.fail(ApiError(400, "bad_request", f"unexpected file field {name!r}; expected "
                                                          f"{', '.join(sorted(self.file_limits))}"))
        if name in self.form.files:
            return self.fail(ApiError(400, "bad_request", f"file field {name!r} given twice"))
        ctype = self.headers.get("content-type", "")
        if not media_type_ok(ctype, name):
            kinds = ", ".join(p + "*" for p in FIELD_TYPES.get(name, _MEDIA_PREFIXES))
            return self.fail(ApiError(415, "unsupported_media_type",
                                      f"field {name!r} has content type {ctype.split(';')[0].strip()!r}; send "
                                      f"{kinds} or application/octet-stream"))
        # the server's own name: the client filename (opts[b"filename"]) never reaches the file system
        path = os.path.join(self.work_dir, f"{name}.upload")
        self.cur = UploadedFile(path, 0, ctype.split(";")[0].strip().lower())
        self.form.files[name] = self.cur
        self.fh = open(path, "wb")
        self.hasher = hashlib.sha256()

    def on_part_data(self, data, start, end):
        if self.error:
            return
        chunk = data[start:end]
        if self.is_file and self.cur is not None:
            self.cur.size += len(chunk)
            limit = self.file_limits[self.name]
            if self.cur.size > limit:
                return self.fail(ApiError(413, "payload_too_large",
                                          f"field {self.name!r} exceeds the upload limit of {_mb(limit)}"))
            self.fh.write(chunk)
            self.hasher.update(chunk)
        else:
            self.buf += chunk
            if len(self.buf) > MAX_FIELD_BYTES:
                self.fail(ApiError(413, "payload_too_large", f"form field {self.name!r} is too long"))

    def on_part_end(self):
        if self.error:
            return
        if self.is_file and self.cur is not None:
            self.close_file()
            self.cur.sha256 = self.hasher.hexdigest()
        elif self.name:
            self.form.fields[self.name] = self.buf.decode("utf-8", "replace")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


async def read_multipart(request, work_dir: str, file_limits: dict) -> FormData:
    """Parse the body of ``request`` into ``work_dir``; raises ApiError (400/413/415) on a bad body."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        shown = ctype.decode("latin-1") or "none"
        raise ApiError(415, "unsupported_media_type", f"expected multipart/form-data, got {shown}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary")
    total_limit = sum(file_limits.values()) + 16 * MAX_FIELD_BYTES
    declared = request.headers.get("content-length")
    try:
        declared = int(declared) if declared is not None else None
    except ValueError:
        raise ApiError(400, "bad_request", "bad Content-Length header") from None
    if declared is not None and declared > total_limit + DRAIN_CAP:
        # too big to be worth draining: answer now and drop the connection
        raise ApiError(413, "payload_too_large", f"the request body ({_mb(declared)}) exceeds the upload limit "
                                                 f"of {_mb(total_limit)}", headers={"Connection": "close"})
    st = _State(work_dir, file_limits)
    if declared is not None and declared > total_limit:
        st.fail(ApiError(413, "payload_too_large",
                         f"the request body ({_mb(declared)}) exceeds the upload limit of {_mb(total_limit)}"))
    parser = MultipartParser(boundary, {
        "on_part_begin": st.on_part_begin, "on_part_data": st.on_part_data, "on_part_end": st.on_part_end,
        "on_header_field": st.on_header_field, "on_header_value": st.on_header_value,
        "on_header_end": st.on_header_end, "on_headers_finished": st.on_headers_finished})
    received = drained = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if st.error is not None:
                drained += len(chunk)
                if drained > DRAIN_CAP:
                    st.error.headers["Connection"] = "close"
                    break
                continue
            if received > total_limit:
                st.fail(ApiError(413, "payload_too_large", f"the request body exceeds {_mb(total_limit)}"))
                continue
            try:
                parser.write(chunk)
            except Exception as e:  # malformed multipart
                st.fail(ApiError(400, "bad_request", f"malformed multipart body ({e})"))
        if st.error is None:
            try:
                parser.finalize()
            except Exception as e:
                st.fail(ApiError(400, "bad_request", f"malformed multipart body ({e})"))
    finally:
        st.close_file()
    if st.error is not None:
        raise st.error
    for f in st.form.files.values():
        if not f.sha256:
            raise ApiError(400, "bad_request", "the multipart body ended inside a file")
    return st.form
