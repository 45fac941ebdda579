"""Template videos: content-addressed storage, landmark analysis (cached on disk), in-memory LRU, ref counts.

The id is the first 24 hex digits of the video's SHA-256, so uploading the same video twice gives the same id
and no second analysis. Landmarks live in the inference cache (``<data_dir>/cache``, keyed by content and
settings), so a restarted server reloads a template without detecting faces again.

Analyses are bounded and independent: up to ``max_analyses`` run at the same time, each with its own face
detector (they share dlib's read-only shape predictor), so a long analysis never holds up a short one; a video
longer than ``max_seconds`` is refused from its header or as soon as decoding passes the limit; one without a
face in its first ``face_search_seconds`` is refused there; an analysis whose client hung up is cancelled.
"""
from __future__ import annotations

import collections
import hashlib
import os
import queue
import threading
import time
from typing import Optional

from server.errors import ApiError, user_message
from server.storage import valid_id
from utils.errors import UserError
from utils.media.container import MediaTooLong
from utils.media.timebase import FPS

# Lazy imports below: the landmark detector (cv2, dlib) and inference.template (torch) load with the first template
# analysis (start-up time of the server).


class _Hooked:
    """The ``cancel`` an upload's analysis polls at every frame, calling ``TemplateStore.analysis_hook`` first (so a
    test can hold an analysis in its slot, or until its client hangs up, instead of betting on how long it takes)."""

    def __init__(self, hook, path, cancel):
        self.hook, self.path, self.cancel = hook, path, cancel

    def is_set(self) -> bool:
        self.hook(self.path, self.cancel)
        return self.cancel is not None and self.cancel.is_set()



def face_choice(face):
    """The parsed ``face`` field (None: no choice); ApiError 400 when it is malformed."""
    from utils.face.landmarks import parse_face

    try:
        return parse_face(face)
    except UserError as e:
        raise ApiError(400, "bad_request", str(e)) from None


def template_id_of(video_sha256: str, choice=None) -> str:
    """A template's id: its video's content and the person chosen (``face_choice``): the same video with another
    face is another template."""
    if choice is None:
        return video_sha256[:24]
    return hashlib.sha256(f"{video_sha256}|face={choice}".encode()).hexdigest()[:24]

class TemplateStore:
    def __init__(self, dubber, storage, max_analyses: int = 4, max_waiting: int = 8, memory: int = 8,
                 max_seconds: float = 0.0, face_search_seconds: float = 0.0, metrics=None):
        self.dubber = dubber
        self.storage = storage
        self.max_analyses = int(max_analyses)
        self.max_waiting = int(max_waiting)
        self.memory = int(memory)
        self.limits = {"max_seconds": float(max_seconds) or None,
                       "face_search_seconds": float(face_search_seconds) or None}
        self.metrics = metrics
        self._lock = threading.Lock()
        self._lru: collections.OrderedDict = collections.OrderedDict()   # id -> PreparedTemplate
        self._refs: collections.Counter = collections.Counter()          # id -> jobs using it
        self._id_locks: dict = {}
        self._pending = 0
        self._detectors: queue.Queue = queue.Queue()
        self._made = 0
        self.analysis_hook = None   # tests: hook(path, cancel) runs at each frame of an upload's analysis

    # ------------------------------------------------------------------ detectors (one per analysis slot)
    def _take_detector(self):
        with self._lock:
            if self._detectors.empty() and self._made < self.max_analyses:
                self._made += 1
                make = True
            else:
                make = False
        if make:
            from utils.face.landmarks import LandmarkDetector
            try:
                return LandmarkDetector()
            except BaseException:
                with self._lock:
                    self._made -= 1
                raise
        return self._detectors.get()

    def _prepare(self, path: str, cancel=None, limits: bool = False, face=None):
        det = self._take_detector()
        try:
            if limits and self.analysis_hook is not None:
                cancel = _Hooked(self.analysis_hook, path, cancel)
            return self.dubber.prepare_template(path, use_cache=True, detector=det, cancel=cancel, face=face,
                                                **(self.limits if limits else {}))
        finally:
            self._detectors.put(det)

    def detect_faces(self, frame):
        """Face boxes of one RGB frame (with one of the analysis detectors)."""
        det = self._take_detector()
        try:
            return [box for box, _ in det.detect(frame)]
        finally:
            self._detectors.put(det)

    # ------------------------------------------------------------------ queries
    def list(self) -> list[dict]:
        return [m for m in (self.storage.read_template_meta(i) for i in self.storage.list_template_ids()) if m]

    def meta(self, template_id: str) -> Optional[dict]:
        if not valid_id(template_id) or template_id not in self.storage.list_template_ids():
            return None
        return self.storage.read_template_meta(template_id)

    @property
    def pending(self) -> int:
        return self._pending

    # ------------------------------------------------------------------ add
    def add(self, upload, cancel=None, face=None) -> tuple[dict, bool]:
        """Analyse and store an uploaded video or still image (blocking; call from a worker thread). ``face``
        chooses the person to dub (``x,y`` / an index); the same video with another choice is another template.

        Returns (meta, created). Raises ApiError 422 for a file that is not a usable video / has no face / is
        too long, 503 when too many analyses are waiting; ``AnalysisCancelled`` once ``cancel`` is set.
        """
        from inference.template import AnalysisCancelled

        choice = face_choice(face)
        template_id = template_id_of(upload.sha256, choice)
        with self._lock:
            if self._pending >= self.max_analyses + self.max_waiting:
                raise ApiError(503, "busy", f"{self._pending} template analyses in progress; try again later",
                               {"Retry-After": "10"})
            self._pending += 1
            id_lock = self._id_locks.setdefault(template_id, threading.Lock())
        try:
            with id_lock:
                existing = self.meta(template_id)
                if existing is not None:
                    return existing, False
                t0 = time.perf_counter()
                names = {upload.path: "the uploaded video", os.path.basename(upload.path): "the uploaded video"}
                try:
                    prepared = self._prepare(upload.path, cancel=cancel, limits=True, face=choice)
                except AnalysisCancelled:
                    if self.metrics is not None:
                        self.metrics.inc("template_analyses_cancelled_total")
                    raise
                except MediaTooLong as e:
                    raise ApiError(422, "template_too_long", user_message(e, names)) from None
                except UserError as e:
                    raise ApiError(422, "unprocessable_media", user_message(e, names)) from None
                t = prepared.template
                meta = {"template_id": template_id, "frames": int(t.num_frames), "fps": FPS,
                        "seconds": round(t.num_frames / FPS, 3), "width": int(t.width), "height": int(t.height),
                        "faceless_frames": int(t.num_faceless), "shots": int(t.num_tracks),
                        "still": int(t.num_frames) == 1, "bytes": int(upload.size), "created": time.time(),
                        "analysis_seconds": round(time.perf_counter() - t0, 3),
                        "warnings": [user_message(UserError(w), names) for w in t.warnings],
                        "face": str(choice or ""), "video_sha256": upload.sha256}
                self.storage.commit_template(template_id, upload.path, meta)
                # reload from the final location (cache hit): the dubber reads frames from template.path
                self._remember(template_id, self._prepare(self.storage.template_video(template_id), face=choice))
                return meta, True
        finally:
            with self._lock:
                self._pending -= 1
                if not id_lock.locked():
                    self._id_locks.pop(template_id, None)

    def add_face(self, template_id: str, face: str) -> tuple[dict, bool]:
        """The stored template ``template_id``'s video with the person ``face`` chosen, as a template of its own."""
        import shutil

        from inference.template import file_digest
        from server.uploads import UploadedFile

        meta = self.meta(template_id)
        if meta is None:
            raise ApiError(404, "template_not_found", f"no template with id {template_id!r}")
        src = self.storage.template_video(template_id)
        work = self.storage.new_work_dir("face")
        try:
            path = os.path.join(work, "video")
            shutil.copyfile(src, path)
            up = UploadedFile(path=path, size=os.path.getsize(path),
                              sha256=meta.get("video_sha256") or file_digest(path))
            return self.add(up, face=face)
        finally:
            self.storage.remove(work)

    def _remember(self, template_id: str, prepared) -> None:
        with self._lock:
            self._lru[template_id] = prepared
            self._lru.move_to_end(template_id)
            while len(self._lru) > self.memory:
                old = next(iter(self._lru))
                if self._refs[old]:
                    break
                self._lru.pop(old)

    # ------------------------------------------------------------------ use by jobs
    def acquire(self, template_id: str):
        """The prepared template for a job (from memory or the disk cache); pair with ``release``."""
        if self.meta(template_id) is None:
            raise ApiError(404, "template_not_found", f"no template with id {template_id!r}")
        with self._lock:
            self._refs[template_id] += 1
            prepared = self._lru.get(template_id)
            if prepared is not None:
                self._lru.move_to_end(template_id)
        if prepared is None:
            try:
                prepared = self._prepare(self.storage.template_video(template_id),
                                         face=(self.meta(template_id) or {}).get("face") or None)
            except UserError as e:
                self.release(template_id)
                raise ApiError(500, "template_damaged", user_message(e, {
                    self.storage.template_video(template_id): f"template {template_id}"})) from None
            except BaseException:
                self.release(template_id)
                raise
            self._remember(template_id, prepared)
        return prepared

    def release(self, template_id: str) -> None:
        with self._lock:
            self._refs[template_id] -= 1
            if self._refs[template_id] <= 0:
                del self._refs[template_id]

    def delete(self, template_id: str) -> None:
        if self.meta(template_id) is None:
            raise ApiError(404, "template_not_found", f"no template with id {template_id!r}")
        with self._lock:
            if self._refs[template_id]:
                raise ApiError(409, "template_in_use", f"template {template_id} is used by "
                                                       f"{self._refs[template_id]} job(s); delete it later")
            prepared = self._lru.pop(template_id, None)
        cache_file = prepared.template.cache_file if prepared is not None else ""
        self.storage.delete_template(template_id, cache_file)
