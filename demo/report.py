"""The demo's report: metrics.json (every number) and report.html / report.md (video, pictures, tables)."""
from __future__ import annotations

import html
import json
import math
import os

from utils.atomic import atomic_write

ROWS = [("dubbed", "LawDNet, held-out speech (ours)"),
        ("template", "baseline: template with its original mouth"),
        ("silence", "baseline: LawDNet driven by silence"),
        ("ground_truth", "ground-truth video (measurement ceiling)")]
COLUMNS = [("openness_corr", "openness r vs truth", "{:+.3f}"), ("psnr_mouth", "PSNR mouth (dB)", "{:.2f}"),
           ("ssim_mouth", "SSIM mouth", "{:.3f}"), ("psnr", "PSNR frame (dB)", "{:.2f}"),
           ("av_corr", "opening vs audio r", "{:+.3f}"), ("opening_agreement", "opening vs truth's r", "{:+.3f}"),
           ("own_lse_c", "LSE-C (demo SyncNet)", "{:.3f}"),
           ("own_lse_d", "LSE-D (demo SyncNet)", "{:.3f}"),
           ("skin_de_mean", "still-skin ΔE vs truth", "{:.2f}"), ("skin_de_p99", "its p99", "{:.1f}"),
           ("lower_de_mean", "lower-face ΔE", "{:.2f}"),
           ("edge_de_p99", "paste-edge ΔE p99", "{:.1f}"), ("fringe_p99", "colour fringe p99", "{:.1f}"),
           ("mouth_sharpness", "mouth sharpness / truth", "{:.2f}"),
           ("skin_flicker_excess", "skin flicker excess", "{:.2f}"),
           ("open_in_silence", "open in silence", "{:.2f}"),
           ("skin_de_mean_tpl", "still-skin ΔE vs template", "{:.2f}"),
           ("mouth_sharpness_tpl", "sharpness / template", "{:.2f}")]
VALIDATION_COLUMNS = ("psnr_mouth", "ssim_mouth", "av_corr", "opening_agreement", "own_lse_c", "own_lse_d")
SYNTHETIC_NOTE = ("All data in this report are synthetic: the speaker is a landmark-warped still photo "
                  "(skimage's astronaut) whose mouth follows espeak-ng speech, rendered by utils/synthetic/. "
                  "Nothing here measures quality on real faces.")


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return spec.format(v)


def metrics_table(summary: dict) -> list[list[str]]:
    """Rows of [name] + COLUMNS for the mean over held-out sentences."""
    out = []
    for key, title in ROWS:
        vals = summary["mean"].get(key)
        if vals is None:
            continue
        out.append([title] + [_fmt(vals.get(c), spec) for c, _, spec in COLUMNS])
    return out


# What the bar asks of the held-out dub beyond sync (issue 25): against the ground truth, still-skin colour within
# these of the template baseline's (mean, 99th percentile), this much of the truth's mouth sharpness, and an open
# mouth in silence no more often than the truth's own (+ this share of the silent frames)
SKIN_DE_MEAN_TOL, SKIN_DE_P99_TOL, MIN_SHARPNESS, SILENCE_TOL = 0.5, 2.0, 0.75, 0.02
# ours: the lower face's median colour (chin, beside the mouth) and the paste edge within these of the template
# baseline's (its own mouth shape already differs from the truth's there)
LOWER_DE_TOL, EDGE_DE_P99_TOL = 1.0, 5.0
# colours the truth has nowhere near (a green line along the jaw, evaluation/fringe.py): the 99th percentile within
# this of the template baseline's (Δa*b*; a thin line of 5 or more is seen)
FRINGE_P99_TOL = 2.0


def quality_bar(summary: dict, min_corr: float = 0.6, baselines=("template", "silence")) -> dict:
    """The project's bar on held-out sentences: openness r >= min_corr; mouth PSNR above both baselines (in
    reconstruction the template is the ground truth, so only the silence baseline counts); still-skin colour
    difference within SKIN_DE_MEAN_TOL / SKIN_DE_P99_TOL of the template baseline's, the lower face's colour and
    the paste edge within LOWER_DE_TOL / EDGE_DE_P99_TOL of it, colour fringes within FRINGE_P99_TOL; mouth sharpness >=
    MIN_SHARPNESS of the truth's; mouth open in silence no more often than the truth's. ``checks`` lists each
    (name, value, limit, ok); ``failed`` the names of those not met (a figure that could not be measured fails)."""
    m = summary["mean"]
    d = m["dubbed"]
    tpl = m.get("template", {})
    truth = m.get("ground_truth", tpl)          # reconstruction: the template baseline is the held-out footage
    r = d.get("openness_corr")
    p = d.get("psnr_mouth")
    base_p = [m[k].get("psnr_mouth") for k in baselines if k in m]
    ok_r = r is not None and r >= min_corr
    ok_p = p is not None and all(b is not None and p > b for b in base_p) and bool(base_p)

    def limit(base, tol):
        return None if base is None else base + tol

    checks = [("openness r", r, min_corr, ">="), ("mouth PSNR above the baselines (dB)", p,
                                                   max((b for b in base_p if b is not None), default=None), ">"),
              ("still-skin ΔE mean", d.get("skin_de_mean"), limit(tpl.get("skin_de_mean", 0.0), SKIN_DE_MEAN_TOL),
               "<="),
              ("still-skin ΔE p99", d.get("skin_de_p99"), limit(tpl.get("skin_de_p99", 0.0), SKIN_DE_P99_TOL), "<="),
              ("lower-face ΔE (median colour)", d.get("lower_de_mean"),
               limit(tpl.get("lower_de_mean", 0.0), LOWER_DE_TOL), "<="),
              ("paste-edge ΔE p99", d.get("edge_de_p99"), limit(tpl.get("edge_de_p99", 0.0), EDGE_DE_P99_TOL), "<="),
              ("colour fringe p99", d.get("fringe_p99"), limit(tpl.get("fringe_p99", 0.0), FRINGE_P99_TOL), "<="),
              ("mouth sharpness / truth's", d.get("mouth_sharpness"), MIN_SHARPNESS, ">="),
              ("mouth open in silence", d.get("open_in_silence"), limit(truth.get("open_in_silence"), SILENCE_TOL),
               "<=")]
    rows = []
    for name, value, lim, op in checks:
        ok = value is not None and lim is not None and {">=": value >= lim, ">": value > lim, "<=": value <= lim}[op]
        if name.startswith("openness"):
            ok = ok_r
        elif name.startswith("mouth PSNR"):
            ok = ok_p
        rows.append({"name": name, "value": value, "limit": lim, "op": op, "ok": bool(ok)})
    failed = [c["name"] for c in rows if not c["ok"]]
    return {"min_corr": min_corr, "corr": r, "corr_ok": bool(ok_r), "psnr_mouth": p,
            "baseline_psnr_mouth": base_p, "psnr_ok": bool(ok_p), "checks": rows, "failed": failed,
            "passed": not failed}


def bar_line(bar: dict) -> str:
    """One line: met, or which checks failed with their values and limits."""
    if bar["passed"]:
        return "quality bar met: " + "; ".join(f"{c['name']} {_fmt(c['value'], '{:.3g}')}" for c in bar["checks"])
    return "quality bar NOT met: " + "; ".join(
        f"{c['name']} {_fmt(c['value'], '{:.3g}')} (needs {c['op']} {_fmt(c['limit'], '{:.3g}')})"
        for c in bar["checks"] if not c["ok"])


def write_metrics(path: str, data: dict) -> str:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    return path


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out_dir: str, data: dict) -> tuple[str, str]:
    """report.html and report.md in ``out_dir`` from the metrics dict (paths inside are relative to out_dir)."""
    header = ["video"] + [t for _, t, _ in COLUMNS]
    rows = metrics_table(data)
    bar = data["quality_bar"]
    verdict = bar_line(bar)
    status = "quality bar met" if bar["passed"] else "quality bar NOT met"
    per = []
    for item in data["heldout"]:
        for key, title in ROWS:
            if key in item["videos"]:
                v = item["videos"][key]
                per.append([f"{item['name']}: {title}"] + [_fmt(v.get(c), s) for c, _, s in COLUMNS])
    setup = data["setup"]
    setup_rows = [[html.escape(str(k)), html.escape(str(v))] for k, v in setup.items()]
    synthetic = data.get("synthetic", True)
    reconstruction = not synthetic and "ground_truth" not in data["mean"]
    note = SYNTHETIC_NOTE if synthetic else (
        "Your videos (--data): the held-out segment (never trained on) is dubbed with its own speech"
        + (" onto its own footage (reconstruction), so the template baseline is the ground truth itself and only "
           "the silence baseline is informative." if reconstruction else
           " onto the --template video; PSNR/SSIM compare with the held-out footage, which is meaningful when the "
           "template's frames line up with it.")
        + " Ground-truth openness comes from a <video>.mouth.npy when there is one, else from the same landmarks.")
    kind = "Synthetic data." if synthetic else "Your videos."
    a = data["artefacts"]
    val_header = ["stage", "step"] + [t for c, t, _ in COLUMNS if c in VALIDATION_COLUMNS] + ["best so far"]
    val_rows = [[h["stage"], str(h["step"])] + [_fmt(h.get(c), spec) for c, _, spec in COLUMNS
                                               if c in VALIDATION_COLUMNS] + ["yes" if h.get("best") else ""]
                for h in data.get("validation") or []]
    best = data.get("best")
    val_text = ("" if not val_rows else
                f"Validation on the held-out segment during training (reconstruction with its own speech); the "
                f"checkpoint of {best['stage']} step {best['step']} was kept as best and made every video above."
                if best else "Validation on the held-out segment during training (reconstruction).")

    def h_table(hdr, rws):
        t = "<table><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in hdr) + "</tr>"
        t += "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rws)
        return t + "</table>"

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>LawDNet demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.note{{background:#fff3cd;border:1px solid #e0c060;padding:.8em}}
.pass{{color:#176317;font-weight:bold}}.fail{{color:#a01010;font-weight:bold}}</style></head><body>
<h1>LawDNet demo report: {status}</h1>
<p class="{'pass' if bar['passed'] else 'fail'}">{html.escape(verdict)}</p>
<p class="note"><b>{kind}</b> {html.escape(note)}</p>
<h2>Dubbed video (held-out sentence: {html.escape(data['heldout'][0]['text'])})</h2>
<video controls width="384" src="{html.escape(a['dubbed_mp4'])}"></video>
<p>Files: <a href="{html.escape(a['dubbed_mp4'])}">{html.escape(a['dubbed_mp4'])}</a>,
template baseline <a href="{html.escape(a['template_mp4'])}">{html.escape(a['template_mp4'])}</a>,
silence baseline <a href="{html.escape(a['silence_mp4'])}">{html.escape(a['silence_mp4'])}</a>.</p>
<h2>Frames side by side</h2>
<p>Template | dub | ground truth, the lower face at its native resolution (each pixel shown 2x2, no smoothing),
with each video's figures against the ground truth above its column.</p>
<img src="{html.escape(a['side_by_side_png'])}" style="max-width:100%">
<h2>Mouth openness over time</h2><img src="{html.escape(a['openness_png'])}" style="max-width:100%">
<h2>Metrics (mean over {len(data['heldout'])} held-out sentence(s))</h2>
{h_table(header, rows)}
<p class="{'pass' if bar['passed'] else 'fail'}">{html.escape(verdict)}</p>
<p>openness r: Pearson correlation of the mouth opening measured with dlib landmarks on each video (inner-lip
gap / eye distance) with the ground-truth openness of the rendering. PSNR/SSIM: against the ground-truth video
(frame, and the aligned mouth crop) from <code>evaluation.evaluate</code>. The ground-truth row shows how well
the landmark measurement itself tracks the rendering (the ceiling for r). LSE-C / LSE-D: Wav2Lip's sync
confidence (higher is better) and distance (lower is better) computed with the SyncNet this run trained, every
video scored against the held-out speech (the silence baseline too); n/a when no SyncNet was trained or given.
What a viewer sees (<code>evaluation/appearance.py</code>, regions from dlib landmarks): still-skin ΔE is the
CIEDE2000 colour difference on the skin speech does not move (cheeks, nose, eyes), mean and 99th percentile
(about 1 is invisible, above 3 is seen: casts, blotches); lower-face ΔE compares the median colour of the chin
and the cheeks beside the mouth (a cast of the generated face); paste-edge ΔE p99 is the same on the blend mask's
feathered edge (seams); colour fringe p99 is how far the chroma of the chin, jaw line and collar lies outside
the colours the truth shows nearby (a green or pink line along the jaw, Δa*b*); mouth sharpness is the Laplacian variance of the mouth box over the truth's (or the
template's); skin flicker excess is the frame-to-frame colour change of the still skin beyond the truth's; open
in silence is the share of the speech's silent frames with the mouth open above the truth's closed level.</p>
<h3>Per sentence</h3>{h_table(header, per)}
{f"<h2>Validation during training</h2><p>{html.escape(val_text)}</p>{h_table(val_header, val_rows)}" if val_rows else ""}
<h2>Set-up</h2>{h_table(['item', 'value'], setup_rows)}
<h2>Time per step (s)</h2>{h_table(['step', 'seconds'], [[k, f'{v:.1f}'] for k, v in data['timings'].items()])}
</body></html>"""
    html_path = os.path.join(out_dir, "report.html")
    with atomic_write(html_path, "w", encoding="utf-8") as f:
        f.write(page)
    md = [f"# LawDNet demo report: {status}\n\n**{verdict}**\n\n> **{kind}** {note}\n",
          f"Dubbed video: [{a['dubbed_mp4']}]({a['dubbed_mp4']})\n",
          f"![frames side by side]({a['side_by_side_png']})\n", f"![openness]({a['openness_png']})\n",
          f"## Metrics (mean over {len(data['heldout'])} held-out sentence(s))\n", _md_table(header, rows), "",
          f"**{verdict}**\n", "## Per sentence\n",
          _md_table(header, per), ""]
    if val_rows:
        md += ["## Validation during training\n", val_text + "\n", _md_table(val_header, val_rows), ""]
    md += ["## Set-up\n", _md_table(["item", "value"], [[str(k), str(v)] for k, v in
                                                                               setup.items()]), ""]
    md_path = os.path.join(out_dir, "report.md")
    with atomic_write(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    return html_path, md_path
