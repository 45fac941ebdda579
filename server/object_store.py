"""Templates and finished results where every node of a Ray cluster finds them, in object storage (fsspec).

Two ways for the nodes of a cluster (docs/cluster.md) to share the server's data:

* a shared path: ``--data_dir`` on a filesystem every node mounts at the same path (NFS, CephFS, Lustre, ...).
  Nothing here is used; every process reads and writes the same folders (server/storage.py).
* object storage: ``--store_url s3://bucket/prefix`` (any fsspec URL: S3 and S3-compatible stores such as MinIO
  or Ceph RGW through ``s3fs``, ``gs://``, ``az://``, or ``file://`` / ``memory://`` in tests). ``--data_dir``
  is then node-local: a replica publishes each template it analysed (video, landmark cache, meta.json) and each
  result it rendered here; another replica fetches a template on first use, the gateway fetches a result when a
  client asks for it.

Layout under the URL::

    templates/<template_id>/video, cache/<landmark cache file>, meta.json     (meta.json last: marks it complete)
    results/<job_id>/output.mp4, job.json                                     (job.json last)
    results/<job_id>/input, pending.json        an accepted async job until it finishes (resumed after a restart)

This module imports neither Ray nor anything of the one-machine path beyond server.storage.
"""
from __future__ import annotations

import json
import os
import posixpath
from typing import Optional

from utils.atomic import atomic_write

# Lazy imports below: fsspec is needed only for --store_url; server.storage imports this module.


class ObjectStore:
    def __init__(self, url: str):
        import fsspec   # only for --store_url (fsspec comes with the Ray / s3fs installs)

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")

    def _key(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _read_json(self, key: str) -> Optional[dict]:
        try:
            with self.fs.open(key, "rb") as f:
                return json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):   # FileNotFoundError is an OSError
            return None

    def _write_json(self, key: str, obj: dict) -> None:
        data = json.dumps(obj, indent=1).encode("utf-8")
        if self.is_local:           # a shared folder: readers must never see half a file
            with atomic_write(key) as f:
                f.write(data)
            return
        with self.fs.open(key, "wb") as f:   # object stores make an object visible only once it is complete
            f.write(data)

    @property
    def is_local(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        return "file" in protocols

    def _put(self, local_file: str, key: str, move: bool = False) -> None:
        self.fs.makedirs(posixpath.dirname(key), exist_ok=True)
        if self.is_local:
            if move:
                try:
                    os.replace(local_file, key)   # same filesystem: atomic and free
                    return
                except OSError:
                    pass
            with atomic_write(key) as f, open(local_file, "rb") as src:
                while True:
                    chunk = src.read(1 << 22)
                    if not chunk:
                        break
                    f.write(chunk)
            return
        self.fs.put_file(local_file, key)

    # ------------------------------------------------------------------ templates
    def push_template(self, storage, template_id: str, cache_file: str = "") -> None:
        """Publish a template committed in ``storage`` (a server.storage.Storage)."""
        d = storage.template_dir(template_id)
        self._put(os.path.join(d, "video"), self._key("templates", template_id, "video"))
        if cache_file and os.path.isfile(cache_file):
            self._put(cache_file, self._key("templates", template_id, "cache", os.path.basename(cache_file)))
        self._put(os.path.join(d, "meta.json"), self._key("templates", template_id, "meta.json"))

    def template_meta(self, template_id: str) -> Optional[dict]:
        return self._read_json(self._key("templates", template_id, "meta.json"))

    def list_template_ids(self) -> list[str]:
        from server.storage import valid_id

        try:
            entries = self.fs.ls(self._key("templates"), detail=False)
        except FileNotFoundError:
            return []
        ids = sorted(posixpath.basename(e.rstrip("/")) for e in entries)
        return [i for i in ids if valid_id(i) and self.fs.exists(self._key("templates", i, "meta.json"))]

    def pull_template(self, storage, template_id: str) -> bool:
        """Copy a published template into the local ``storage`` (meta.json last); False if it is not published."""
        meta = self.template_meta(template_id)
        if meta is None:
            return False
        try:
            caches = self.fs.ls(self._key("templates", template_id, "cache"), detail=False)
        except FileNotFoundError:
            caches = []
        for c in caches:
            with atomic_write(os.path.join(storage.cache, posixpath.basename(c.rstrip("/")))) as f, \
                    self.fs.open(c, "rb") as src:
                f.write(src.read())
        d = storage.template_dir(template_id)
        with atomic_write(os.path.join(d, "video")) as f, \
                self.fs.open(self._key("templates", template_id, "video"), "rb") as src:
            while True:
                chunk = src.read(1 << 22)
                if not chunk:
                    break
                f.write(chunk)
        with atomic_write(os.path.join(d, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        return True

    def delete_template(self, template_id: str) -> None:
        key = self._key("templates", template_id)
        if self.fs.exists(self._key("templates", template_id, "meta.json")):
            self.fs.rm(self._key("templates", template_id, "meta.json"))   # first: never listed half-deleted
        if self.fs.exists(key):
            self.fs.rm(key, recursive=True)

    # ------------------------------------------------------------------ results
    def put_output(self, job_id: str, output_file: str) -> None:
        """Publish a rendered mp4 (written by the replica that rendered it)."""
        self._put(output_file, self._key("results", job_id, "output.mp4"), move=True)

    def put_record(self, job_id: str, record: dict) -> None:
        """The finished job's status (written by the gateway; its presence marks the result complete)."""
        key = self._key("results", job_id, "job.json")
        self.fs.makedirs(posixpath.dirname(key), exist_ok=True)
        self._write_json(key, record)

    def put_pending(self, job_id: str, input_file: str, record: dict) -> None:
        """An accepted async job's input and settings, until it finishes: a restarted gateway resumes it."""
        self._put(input_file, self._key("results", job_id, "input"))
        self.fs.makedirs(self._key("results", job_id), exist_ok=True)
        self._write_json(self._key("results", job_id, "pending.json"), record)

    def pending_jobs(self) -> list[tuple[str, dict]]:
        """(job id, record) of accepted async jobs that never finished (oldest first)."""
        from server.storage import valid_id

        try:
            entries = self.fs.ls(self._key("results"), detail=False)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            job_id = posixpath.basename(e.rstrip("/"))
            if not valid_id(job_id) or self.fs.exists(self._key("results", job_id, "job.json")):
                continue
            rec = self._read_json(self._key("results", job_id, "pending.json"))
            if rec is not None and self.fs.exists(self._key("results", job_id, "input")):
                out.append((job_id, rec))
        return sorted(out, key=lambda x: x[1].get("created", 0))

    def fetch_input(self, job_id: str, local_path: str) -> None:
        with atomic_write(local_path) as f, self.fs.open(self._key("results", job_id, "input"), "rb") as src:
            f.write(src.read())

    def drop_pending(self, job_id: str) -> None:
        for name in ("pending.json", "input"):
            key = self._key("results", job_id, name)
            if self.fs.exists(key):
                self.fs.rm(key)

    def result_record(self, job_id: str) -> Optional[dict]:
        return self._read_json(self._key("results", job_id, "job.json"))

    def local_output(self, job_id: str) -> str:
        """The mp4's path when this store is a local (or shared, mounted) folder; "" for remote stores."""
        return self._key("results", job_id, "output.mp4") if self.is_local else ""

    def fetch_output(self, job_id: str, local_path: str) -> None:
        with atomic_write(local_path) as f, self.fs.open(self._key("results", job_id, "output.mp4"), "rb") as src:
            while True:
                chunk = src.read(1 << 22)
                if not chunk:
                    break
                f.write(chunk)

    def delete_result(self, job_id: str) -> None:
        key = self._key("results", job_id)
        if self.fs.exists(key):
            self.fs.rm(key, recursive=True)
