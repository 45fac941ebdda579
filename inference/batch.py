"""Batch dubbing from a manifest: many (template, audio) pairs, on this machine or across a Ray cluster.

    python -m inference.batch --manifest jobs.csv --out_dir DIR --checkpoint model.pth [--ray ADDRESS]
        [--workers N --cpus_per_worker 1 --gpus_per_worker 0] [any InferenceConfig flag: --device, --batch_size, ...]

The manifest is a CSV with a header naming at least ``template``, ``audio`` and ``output`` (other columns are
ignored). Relative ``template`` / ``audio`` paths are taken from the manifest's folder, a relative ``output`` from
``--out_dir``.

* Each template is analysed once (landmarks, into ``--cache_dir``, default ``DIR/.cache``) however many rows use it.
* Resumable: every output is written under a temporary name and renamed when complete, then its row is recorded
  in ``DIR/.batch_done.jsonl`` (with the inputs' size and time stamp); a re-run skips recorded rows whose output
  still exists and does only what is left (a row whose inputs changed is done again).
* One bad row (a missing file, a video without a face, a corrupt audio, ...) is one line in the summary and never
  stops the others.
* A progress bar shows rows done and frames/s; ``DIR/summary.csv`` and ``DIR/summary.json`` list every row
  (``dubbed``, ``already done`` or ``failed`` with the error). Exit status 0 when no row failed, 1 otherwise.

Without ``--ray`` everything runs in this process with one model. With ``--ray`` (``auto``, ``local`` or
``HOST:PORT``) templates are analysed as Ray tasks and rows are dubbed by ``--workers`` Ray actors, each with one
model (inference/batch_ray.py, imported only then); ``DIR`` and the inputs must then be on a filesystem every node
mounts at the same path. A worker that dies mid-row has its row redone by another one.

The model, torch and Ray are imported inside functions, so that a mistake in the command or the manifest is
reported at once.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from config.config import InferenceConfig, add_arguments, from_args
from utils.atomic import TMP_PREFIX, atomic_write
from utils.errors import UserError, cli_main

# Lazy imports below: the model stack (inference.dubber, torch) loads only after the manifest and the rows'
# files were checked, so mistakes answer at once; Ray loads only under --ray (inference/batch_ray.py).

COLUMNS = ("template", "audio", "output")
DONE_FILE = ".batch_done.jsonl"
DUBBED, ALREADY, FAILED = "dubbed", "already done", "failed"


@dataclass
class Row:
    line: int                 # line of the manifest (the header is line 1)
    template: str             # absolute paths
    audio: str
    output: str
    status: str = ""
    error: str = ""
    frames: int = 0
    seconds: float = 0.0
    key: str = ""

    def public(self) -> dict:
        return {"line": self.line, "template": self.template, "audio": self.audio, "output": self.output,
                "status": self.status, "error": self.error, "frames": self.frames, "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------------------------------------- manifest / state
def read_manifest(manifest, out_dir) -> list[Row]:
    """The rows of ``manifest``; UserError (one line) for a missing file, a missing column or duplicate outputs."""
    manifest = os.fspath(manifest)
    if not os.path.isfile(manifest):
        raise UserError(f"{manifest}: manifest not found")
    base = os.path.dirname(os.path.abspath(manifest))
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            names = {(n or "").strip().lower(): n for n in (reader.fieldnames or [])}
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise UserError(f"{manifest}: missing column(s) {', '.join(missing)}; the header line must name "
                                f"{', '.join(COLUMNS)} (found: {', '.join(reader.fieldnames or []) or 'nothing'})")
            rows = []
            for i, rec in enumerate(reader, start=2):
                vals = {c: (rec.get(names[c]) or "").strip() for c in COLUMNS}
                if not any(vals.values()):
                    continue                                   # blank line
                t, a, o = vals["template"], vals["audio"], vals["output"]
                rows.append(Row(i, os.path.join(base, t) if t else "", os.path.join(base, a) if a else "",
                                os.path.abspath(os.path.join(out_dir, o)) if o else ""))
    except UnicodeDecodeError as e:
        raise UserError(f"{manifest}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        raise UserError(f"{manifest}: not a readable CSV file ({e})") from None
    if not rows:
        raise UserError(f"{manifest}: no rows under the header")
    seen: dict = {}
    for r in rows:
        if r.output and r.output in seen:
            raise UserError(f"{manifest}: lines {seen[r.output]} and {r.line} write the same output {r.output}")
        seen[r.output] = r.line
    return rows


def _stamp(path: str) -> list:
    try:
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [os.path.abspath(path), None, None]


def row_key(row: Row) -> str:
    """What makes a row the same row again: its inputs (path, size, time stamp) and its output."""
    return hashlib.sha256(json.dumps([_stamp(row.template), _stamp(row.audio), row.output]).encode()).hexdigest()


def load_done(out_dir: str) -> dict:
    done: dict = {}
    path = os.path.join(out_dir, DONE_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    done[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    continue            # a line cut by a crash
    return done


def record_done(out_dir: str, row: Row) -> None:
    """Append the row to the completion record (one line, flushed and synced: a crash keeps every finished row)."""
    path = os.path.join(out_dir, DONE_FILE)
    cut = False
    if os.path.isfile(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"         # a line cut by a crash: start a new one
    with open(path, "a", encoding="utf-8") as f:
        rec = {"key": row.key, "line": row.line, "output": row.output, "frames": row.frames,
               "seconds": round(row.seconds, 3), "time": time.time()}
        f.write(("\n" if cut else "") + json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------- one row
def check_row(row: Row) -> None:
    from inference.dubber import check_output_path

    for path, what in ((row.template, "template"), (row.audio, "audio")):
        if not path:
            raise UserError(f"line {row.line}: the {what} column is empty")
        if not os.path.isfile(path):
            raise UserError(f"{path}: {what} file not found")
    if not row.output:
        raise UserError(f"line {row.line}: the output column is empty")
    check_output_path(row.output)
    if row.output in (os.path.abspath(row.template), os.path.abspath(row.audio)):
        raise UserError(f"{row.output}: the output would overwrite an input")


def describe_error(e: BaseException) -> str:
    if isinstance(e, UserError):
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"internal error: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def dub_row(dubber, prepared, row: Row) -> dict:
    """Dub one row with a prepared template into a temporary file next to the output, renamed when complete."""
    import tempfile

    folder = os.path.dirname(row.output)
    os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(row.output)[1]
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(row.output)}.", suffix=ext, dir=folder)
    os.close(fd)
    try:
        stats = dubber.dub(prepared, row.audio, tmp)
        os.replace(tmp, row.output)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return {"frames": int(stats["frames"]), "seconds": float(stats["seconds"])}


class TemplateCache:
    """Prepared templates of one worker, the last few kept (rows come grouped by template)."""

    def __init__(self, dubber, keep: int = 2):
        self.dubber, self.keep = dubber, keep
        self._items: dict = {}

    def get(self, path: str):
        if path in self._items:
            item = self._items.pop(path)
        else:
            try:
                item = self.dubber.prepare_template(path)
            except Exception as e:        # remembered: every row of this template gets the same line
                item = e
        self._items[path] = item
        while len(self._items) > self.keep:
            self._items.pop(next(iter(self._items)))
        if isinstance(item, BaseException):
            raise item
        return item


def run_row(templates: TemplateCache, row: Row) -> dict:
    """Check and dub one row; never raises: ``{"ok": True, frames, seconds}`` or ``{"ok": False, "error"}``."""
    try:
        check_row(row)
        prepared = templates.get(row.template)
        return {"ok": True, **dub_row(templates.dubber, prepared, row)}
    except Exception as e:
        return {"ok": False, "error": describe_error(e)}


# ---------------------------------------------------------------------------------------------- the batch
@dataclass
class BatchOptions:
    checkpoint: str
    out_dir: str
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    ray: str = ""                  # Ray address; empty: this machine, no Ray
    workers: int = 0               # Ray workers (0: as many as the cluster's CPUs / GPUs allow)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    progress: bool = True


def _group_by_template(rows: list[Row]) -> list[Row]:
    order: dict = {}
    for r in rows:
        order.setdefault(r.template, []).append(r)
    return [r for group in order.values() for r in group]


def run_local(rows: list[Row], opts: BatchOptions, on_result: Callable[[Row, dict], None]) -> None:
    from inference.dubber import Dubber

    dubber = Dubber(opts.checkpoint, opts.inference, progress=False)
    templates = TemplateCache(dubber)
    for row in rows:
        on_result(row, run_row(templates, row))


def run_batch(manifest, opts: BatchOptions) -> list[Row]:
    """Dub every row of ``manifest`` not done yet; writes the summary; returns the rows with their status."""
    from tqdm import tqdm

    out_dir = os.path.abspath(os.fspath(opts.out_dir))
    rows = read_manifest(manifest, out_dir)
    if not os.path.isfile(os.fspath(opts.checkpoint)):
        raise UserError(f"{opts.checkpoint}: checkpoint file not found")
    os.makedirs(out_dir, exist_ok=True)
    inf = opts.inference
    if inf.cache_dir is None:
        inf = dataclasses.replace(inf, cache_dir=os.path.join(out_dir, ".cache"))
    opts = dataclasses.replace(opts, inference=inf.validate())
    done = load_done(out_dir)
    todo = []
    for r in rows:
        r.key = row_key(r)
        rec = done.get(r.key)
        if rec is not None and os.path.isfile(r.output):
            r.status, r.frames = ALREADY, int(rec.get("frames", 0))
        else:
            todo.append(r)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), unit="row", desc="batch", disable=not opts.progress,
               dynamic_ncols=True)
    t0, frames = time.perf_counter(), {"n": 0}

    def on_result(row: Row, res: dict) -> None:
        if res.get("ok"):
            row.status, row.frames, row.seconds = DUBBED, res["frames"], res["seconds"]
            record_done(out_dir, row)
            frames["n"] += row.frames
        else:
            row.status, row.error = FAILED, res.get("error", "failed")
            bar.write(f"line {row.line}: {row.error}", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(f"{frames['n'] / max(1e-9, time.perf_counter() - t0):.1f} frames/s")

    try:
        ready = []
        for r in todo:                    # missing files, bad output names: reported before any model is loaded
            try:
                check_row(r)
                ready.append(r)
            except Exception as e:
                on_result(r, {"ok": False, "error": describe_error(e)})
        todo = ready
        if todo:
            todo = _group_by_template(todo)
            if opts.ray:
                from inference.batch_ray import run_ray   # Ray only under --ray

                run_ray(todo, opts, on_result)
            else:
                run_local(todo, opts, on_result)
    finally:
        bar.close()
        for r in rows:
            if not r.status:
                r.status, r.error = FAILED, "not run (the batch was interrupted)"
        write_summary(out_dir, rows, time.perf_counter() - t0)
    return rows


def write_summary(out_dir: str, rows: list[Row], seconds: float) -> None:
    fields = list(Row(0, "", "", "").public())
    with atomic_write(os.path.join(out_dir, "summary.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r.public())
    counts = {s: sum(r.status == s for r in rows) for s in (DUBBED, ALREADY, FAILED)}
    frames = sum(r.frames for r in rows if r.status == DUBBED)
    with atomic_write(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": [r.public() for r in rows], "counts": counts, "frames_dubbed": frames,
                   "seconds": round(seconds, 3), "frames_per_second": round(frames / seconds, 3) if seconds else 0.0},
                  f, indent=1)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Dub every row of a manifest (template, audio, output), resumably.")
    p.add_argument("--manifest", required=True, help="CSV with the columns template, audio, output")
    p.add_argument("--out_dir", required=True, help="outputs (relative output paths), the record of finished rows "
                   "and summary.csv / summary.json")
    p.add_argument("--checkpoint", required=True, help="LawDNet checkpoint (ours or official)")
    p.add_argument("--ray", default="", help="run on a Ray cluster: auto (the one `ray start` joined), local, or "
                   "HOST:PORT; unset: this machine, no Ray")
    p.add_argument("--workers", type=int, default=0, help="--ray: dubbing workers, one model each (0: as many as "
                   "the cluster's free CPUs / GPUs allow)")
    p.add_argument("--cpus_per_worker", type=float, default=1.0, help="--ray: CPU cores per worker")
    p.add_argument("--gpus_per_worker", type=float, default=0.0, help="--ray: GPUs per worker (1 on GPU nodes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(p.add_argument_group("dub settings (InferenceConfig)"), InferenceConfig)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    opts = BatchOptions(checkpoint=args.checkpoint, out_dir=args.out_dir, inference=from_args(InferenceConfig, args),
                        ray=args.ray, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                        gpus_per_worker=args.gpus_per_worker, progress=not args.quiet)
    rows = run_batch(args.manifest, opts)
    n = {s: sum(r.status == s for r in rows) for s in (DUBBED, ALREADY, FAILED)}
    print(f"{n[DUBBED]} dubbed, {n[ALREADY]} already done, {n[FAILED]} failed; summary: "
          f"{os.path.join(os.path.abspath(args.out_dir), 'summary.csv')}")
    return 1 if n[FAILED] else 0


if __name__ == "__main__":
    from utils.threads import prefer_passive_waiting

    prefer_passive_waiting()   # before torch is imported
    sys.exit(cli_main(main))
