"""On-disk layout of the server. Every name on disk is generated here; client filenames are never used.

    <data_dir>/templates/<template_id>/video     uploaded template video (content-addressed id)
    <data_dir>/templates/<template_id>/meta.json
    <data_dir>/cache/                            landmark cache (inference.template), survives restarts
    <data_dir>/tmp/<random>/                     per-request / per-job work folders (uploads, outputs)

Everything under tmp/ belongs to a live request or job and is removed when it ends; leftovers of a crash are
swept at start-up.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile

_ID_RE = re.compile(r"^[0-9a-f]{8,64}$")


def new_id(nbytes: int = 12) -> str:
    return secrets.token_hex(nbytes)


def valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value or ""))


class Storage:
    def __init__(self, data_dir: str, work_name: str = ""):
        """``work_name``: a process of a cluster sharing ``data_dir`` keeps (and sweeps) only tmp/<work_name>/."""
        self.root = os.path.abspath(os.fspath(data_dir))
        self.templates = os.path.join(self.root, "templates")
        self.cache = os.path.join(self.root, "cache")
        self.tmp = os.path.join(self.root, "tmp", work_name) if work_name else os.path.join(self.root, "tmp")
        for d in (self.templates, self.cache, self.tmp):
            os.makedirs(d, exist_ok=True)

    # ------------------------------------------------------------- work folders
    def sweep_tmp(self) -> int:
        """Remove work folders left by a previous process (crash, kill -9); returns how many."""
        n = 0
        for name in os.listdir(self.tmp):
            shutil.rmtree(os.path.join(self.tmp, name), ignore_errors=True)
            n += 1
        return n

    def new_work_dir(self, prefix: str = "w") -> str:
        return tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.tmp)

    def remove(self, path: str) -> None:
        """Delete a work folder or file, but only if it lies inside the data folder."""
        if not path:
            return
        path = os.path.abspath(path)
        if os.path.commonpath([path, self.root]) != self.root or path == self.root:
            raise ValueError(f"refusing to delete {path}: outside {self.root}")
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            try:
                os.remove(path)
            except OSError:
                pass

    def tmp_entries(self) -> list[str]:
        return sorted(os.listdir(self.tmp))

    # ------------------------------------------------------------- templates
    def template_dir(self, template_id: str) -> str:
        if not valid_id(template_id):
            raise ValueError(f"bad template id {template_id!r}")
        return os.path.join(self.templates, template_id)

    def template_video(self, template_id: str) -> str:
        return os.path.join(self.template_dir(template_id), "video")

    def read_template_meta(self, template_id: str):
        try:
            with open(os.path.join(self.template_dir(template_id), "meta.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def list_template_ids(self) -> list[str]:
        out = []
        for name in sorted(os.listdir(self.templates)):
            if valid_id(name) and os.path.isfile(os.path.join(self.templates, name, "meta.json")) \
                    and os.path.isfile(os.path.join(self.templates, name, "video")):
                out.append(name)
        return out

    def commit_template(self, template_id: str, video_file: str, meta: dict) -> None:
        """Move an analysed upload into place atomically (meta.json last: its presence marks it complete)."""
        d = self.template_dir(template_id)
        os.makedirs(d, exist_ok=True)
        os.replace(video_file, os.path.join(d, "video"))
        tmp = os.path.join(d, ".meta.json.part")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, os.path.join(d, "meta.json"))

    def delete_template(self, template_id: str, cache_file: str = "") -> None:
        d = self.template_dir(template_id)
        meta = os.path.join(d, "meta.json")
        if os.path.exists(meta):
            os.remove(meta)  # first: a half-deleted template is never listed
        shutil.rmtree(d, ignore_errors=True)
        if cache_file and os.path.dirname(os.path.abspath(cache_file)) == self.cache:
            try:
                os.remove(cache_file)
            except OSError:
                pass
