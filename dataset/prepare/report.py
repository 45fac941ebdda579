"""The data-preparation report: per-video records, shard reports joined into one, the printed table."""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

from dataset.prepare.layout import Layout, atomic_json, read_json


def count_statuses(records) -> dict:
    out = {"processed": 0, "skipped": 0, "failed": 0}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out



def merge_shard_reports(data_root: str) -> Optional[dict]:
    """Join report.shard-*.json of a data root into report.json (after a Slurm array); None if there are none."""
    L = Layout(data_root)
    names = sorted(n for n in os.listdir(L.root) if n.startswith("report.shard-") and n.endswith(".json"))
    if not names:
        return None
    videos: dict = {}
    parts = []
    for n in names:
        r = read_json(os.path.join(L.root, n))
        if not r:
            continue
        parts.append(n)
        videos.update(r.get("videos", {}))
    report = {"format": "lawdnet-report-v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "data_root": L.root, "merged_from": parts, "counts": count_statuses(videos.values()),
              "videos": {v: videos[v] for v in sorted(videos)}}
    atomic_json(L.report(), report)
    return report



# ---------------------------------------------------------------------------------------------- printing

def format_report(report: dict, max_rows: int = 60) -> str:
    """Summary table of a report: counts, then one row per video (processed rows dropped when there are many)."""
    rows = list(report.get("videos", {}).values())
    if len(rows) > max_rows:
        rows = [r for r in rows if r["status"] != "processed"][:max_rows]
    name_w = max([5] + [len(r["video"]) for r in rows])
    lines = [f"{'video':<{name_w}}  {'status':<9}  {'frames':>6}  {'no-face':>7}  reason",
             f"{'-' * name_w}  {'-' * 9}  {'-' * 6}  {'-' * 7}  {'-' * 6}"]
    for r in rows:
        nf = "" if r.get("num_frames") is None else str(r["num_frames"])
        inv = "" if r.get("invalid_frames") is None else str(r["invalid_frames"])
        reason = r.get("reason", "")
        if r.get("previous_run") and r["status"] != "processed" and reason != "already processed":
            reason += " [earlier run; --retry_failed retries]"
        lines.append(f"{r['video']:<{name_w}}  {r['status']:<9}  {nf:>6}  {inv:>7}  {reason}")
    for r in report.get("videos", {}).values():
        for w in r.get("warnings") or []:
            lines.append(f"warning: {r['video']}: {w}")
    c = report.get("counts", {})
    lines.append(f"processed {c.get('processed', 0)}, skipped {c.get('skipped', 0)}, failed {c.get('failed', 0)}"
                 f" ({report.get('seconds', 0):.1f} s)")
    return "\n".join(lines)


def print_report(report: dict, file=None) -> None:
    print(format_report(report), file=file or sys.stdout)

