"""``run_demo``: synthetic speaker -> data pipeline -> SyncNet -> tiny LawDNet (frame, then clip stage) -> dub a
held-out sentence -> metrics against ground truth and two baselines -> report. Every step keeps its output in
``output_dir`` and is skipped on a re-run when its output is there (a changed setting redoes what it affects)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from config.config import InferenceConfig
from demo import dubbing, figures, metrics, report, speaker, training
from demo.budget import NOMINAL, OVERRUN, USEFUL_STEPS, Budget, check_budget, fixed_costs, useful_training_s
from demo.speaker import ENGLISH, SpeakerSpec, default_holdout_s
from demo.training import TinyModel
from demo.validation import METRICS, Validator
from utils.atomic import atomic_write
from utils.errors import UserError
from utils.media.formats import VIDEO_EXTS
from utils.media.timebase import FPS
from utils.media.video_io import count_frames, iter_frames, probe
from utils.synthetic.speech import SENTENCES

# Lazy imports below: torch, the models, the data set index, the landmark detector (cv2, dlib) and the evaluation /
# training packages (torch behind each) load only when a run needs them, so demo.py answers --help and option errors
# fast.

STEPS = ("make the data", "data pipeline", "train SyncNet", "train LawDNet frame stage (tiny)",
         "train LawDNet clip stage (tiny_clip)", "dub held-out speech + baselines", "evaluate", "write report")
# shares of the training time (what is left after the data steps minus the evaluation reserve). The clip stage
# is kept short: on the tiny model its temporal GAN slowly lowers held-out openness r (frame stage alone 0.66;
# +1500 clip steps 0.65-0.66; +4280 steps 0.59)
SHARES = {"syncnet": 0.12, "frame": 0.76, "clip": 0.12}


@dataclass
class DemoOptions:
    output_dir: str = "demo_output"
    minutes: float = 30.0
    device: str = ""                       # cpu, cuda or cuda:N for every step (unset: cuda if available, else cpu)
    data: str = ""                         # your videos of one person (a folder or one video): trains a model of them
    checkpoint: str = ""                   # use this generator (ours or official) and skip training
    syncnet: str = ""                      # a mel SyncNet for the LSE columns (default: the one the demo trains)
    # how the dubs are made; its mouth_region_size / audio_feature / audio_model_path describe an official
    # --checkpoint or --init_from (which store neither); its device is always the run's
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    speaker: SpeakerSpec = field(default_factory=SpeakerSpec)
    model: TinyModel = field(default_factory=TinyModel)
    frame_steps: int = 0                   # > 0: exact step counts instead of the time budget (benchmarks)
    clip_steps: int = 0
    syncnet_steps: int = 0                 # > 0: exact SyncNet steps instead of its budget share
    seed: int = 456
    min_corr: float = 0.6
    progress: bool = True                  # progress bars
    save_picture: str = ""                 # also copy the side-by-side PNG here (e.g. docs/images/demo.png)
    # person-specific training (--data): the held-out segment, where its speech is dubbed, the starting point,
    # validation during training
    holdout_s: float | None = None         # None: the whole last video when there are several, else its last 20 %
    template: str = ""                     # dub the held-out speech onto this video ("" = the held-out footage)
    init_from: str = ""                    # start training from this LawDNet checkpoint (ours or official)
    val_every: int = 1000                  # validate every N steps and at the end of each stage (0 = never)
    select_by: str = "psnr_mouth"          # validation figure that picks best.pth


def _check(o: DemoOptions) -> None:
    if not o.minutes or o.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {o.minutes}")
    if o.data and not os.path.exists(o.data):
        raise UserError(f"--data {o.data}: not a folder or a video file")
    for flag, path in (("--checkpoint", o.checkpoint), ("--init_from", o.init_from), ("--template", o.template)):
        if path and not os.path.isfile(path):
            raise UserError(f"{flag} {path}: file not found")
    if o.checkpoint and o.init_from:
        raise UserError("--checkpoint skips training and --init_from starts it: pass one")
    if (o.template or o.holdout_s is not None) and not o.data:
        raise UserError("--template and --holdout_s apply to your own videos (--data)")
    if o.val_every < 0:
        raise UserError(f"--val_every must be >= 0 (0 = no validation), got {o.val_every}")

    if o.select_by not in METRICS:
        raise UserError(f"--select_by must be one of {', '.join(METRICS)}, got {o.select_by!r}")
    if o.syncnet and not os.path.isfile(o.syncnet):
        raise UserError(f"--syncnet {o.syncnet}: file not found")
    if o.device and not (o.device == "cpu" or o.device == "cuda" or o.device.startswith("cuda:")):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {o.device!r}")
    if o.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {o.device}: CUDA is not available on this machine")
        if ":" in o.device and int(o.device.split(":")[1]) >= torch.cuda.device_count():
            raise UserError(f"--device {o.device}: only {torch.cuda.device_count()} CUDA device(s)")
    if os.path.exists(o.output_dir) and not os.path.isdir(o.output_dir):
        raise UserError(f"--output_dir {o.output_dir}: exists and is not a folder")


def _invalidate(out: str, settings: dict, log) -> None:
    """Remove the outputs a changed setting makes stale: data -> everything; model/training -> models, validation
    and results; evaluation (the template) -> results."""
    path = os.path.join(out, "demo_settings.json")
    old = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
    stale = []
    if old.get("data") != settings["data"]:
        stale = ["prepared", "models", "validation", "results"]
    elif old.get("training") != settings["training"]:
        stale = ["models", "validation", "results"]
    elif old.get("evaluation") != settings["evaluation"]:
        stale = ["results"]
    for d in stale:
        p = os.path.join(out, d)
        if os.path.isdir(p):
            log(f"settings changed since the last run: removing {p}")
            shutil.rmtree(p)
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=1)


def _summary_mean(items: list[dict]) -> dict:
    from demo.metrics import KEPT

    keys = tuple(dict.fromkeys(("openness_corr", "psnr_mouth", "ssim_mouth", "psnr", "av_corr", "own_lse_c",
                                "own_lse_d") + KEPT))
    out = {}
    for row in ("dubbed", "template", "silence", "ground_truth"):
        vals = {}
        for k in keys:
            xs = [it["videos"][row].get(k) for it in items if row in it["videos"]]
            xs = [x for x in xs if x is not None and np.isfinite(x)]
            vals[k] = float(np.mean(xs)) if xs else None
        if any(row in it["videos"] for it in items):
            out[row] = vals
    return out


def _estimate_frames(opts: DemoOptions) -> tuple[int, int, int]:
    """(frames still to render, training frames, held-out frames) for the plan, before anything is made."""
    out = os.path.abspath(opts.output_dir)
    prepared = os.path.isfile(os.path.join(out, "prepared", "training_json.json"))
    if opts.data:
        src = opts.data
        vids = ([src] if os.path.isfile(src) else
                [os.path.join(src, n) for n in sorted(os.listdir(src)) if n.lower().endswith(VIDEO_EXTS)])
        frames = [count_frames(v, FPS) for v in vids] or [0]
        hold = opts.holdout_s if opts.holdout_s is not None else default_holdout_s(len(frames), frames[-1] / FPS)
        held = frames[-1] if hold == 0 else min(frames[-1], int(round(hold * FPS)))
        return 0, 0 if prepared else sum(frames) - held, held

    sp = opts.speaker

    def frames(sid, speed):                    # lead/tail silence + ~the espeak-ng duration of the words
        return int(FPS * (0.6 + len(SENTENCES[sid][1].split()) * 60.0 / speed))

    train = sum(frames(sid, v) for sid in ENGLISH[:sp.train_sentences] for v in sp.speeds)
    mid = sorted(sp.speeds)[len(sp.speeds) // 2]
    held = sum(frames(sid, mid) for sid in ENGLISH[len(ENGLISH) - sp.heldout_sentences:])
    rendered = os.path.isfile(os.path.join(out, "data", "eval", "template.mp4"))
    return (0 if rendered else train + 2 * held), (0 if prepared else train), held


def model_from_init(opts: DemoOptions) -> tuple[TinyModel, dict | None, str, str, str]:
    """(model settings, generator overrides, audio feature, warp mode, preprocessing profile) - from --init_from's
    checkpoint when given, so training continues its architecture and its data are prepared the way it was
    trained (an official file: m 288, deepspeech2 unless the flags say otherwise, the official profile)."""
    if not opts.init_from:
        return opts.model, None, "mel", opts.model.warp_mode, "lawdnet"
    from models.checkpoint import checkpoint_info, read_checkpoint

    info = checkpoint_info(read_checkpoint(opts.init_from), opts.init_from)
    cfg = info["model_config"]
    m = opts.inference.mouth_region_size or info["mouth_region_size"]
    feature = opts.inference.audio_feature or info["audio_feature"] or "mel"
    keep = ("source_channel", "ref_channel", "warp_layer_num", "num_kpoints", "coarse_grid_size", "encoder_channels",
            "align_channels", "attn_dim", "decoder_channels", "attn_grid")
    return (dataclasses.replace(opts.model, mouth_region_size=int(m)), {k: getattr(cfg, k) for k in keep}, feature,
            cfg.warp_mode, info["profile"])


def _probe_model(index: str, model: TinyModel, overrides: dict | None, feature: str, warp_mode: str):
    """A generator of the architecture this run trains (random weights), for the budget's speed probe."""
    from config.config import ModelConfig
    from dataset.index import load_index
    from models.lawdnet import LawDNet

    ix = load_index(index)
    video = next(iter(ix.videos.values()))
    dim = int(np.load(video.features[feature], mmap_mode="r").shape[1])
    return LawDNet(ModelConfig(**{**(overrides or model.model_overrides()), "audio_channel": dim,
                                  "warp_mode": warp_mode}))


def run_demo(opts: DemoOptions, log=None) -> dict:
    """Run the whole demo; returns the metrics dict (also written to <output_dir>/metrics.json)."""
    _check(opts)
    out = os.path.abspath(opts.output_dir)
    budget = Budget(opts.minutes * 60.0, len(STEPS), log)
    say = budget.log
    # up front: can the budget be kept, and does it leave enough training for a useful model?
    n_render, n_train, n_held = _estimate_frames(opts)
    fixed = fixed_costs(n_render, n_train, n_held)
    trains = not opts.checkpoint
    validates = bool(trains and opts.data and opts.val_every)
    needed = useful_training_s() if trains else 0.0
    per_val = n_held * (0.4 * NOMINAL["dub_frame"] + 0.25 * NOMINAL["eval_frame"])
    if validates:                               # validations after every val_every steps and after each stage
        needed += per_val * (2 + USEFUL_STEPS["frame"] // opts.val_every + USEFUL_STEPS["clip"] // opts.val_every)
    planned = None
    if trains and opts.frame_steps and opts.clip_steps:
        planned = useful_training_s({"frame": opts.frame_steps, "clip": opts.clip_steps,
                                     "sync": opts.syncnet_steps or USEFUL_STEPS["sync"]})
    warned = check_budget(budget.total_s, fixed, needed, planned, say)
    os.makedirs(out, exist_ok=True)
    model, overrides, feature, warp_mode, profile = model_from_init(opts)
    settings = {"data": {"real": os.path.abspath(opts.data) if opts.data else "", "holdout_s": opts.holdout_s,
                         "speaker": dataclasses.asdict(opts.speaker), "feature": feature, "profile": profile},
                "training": {"model": dataclasses.asdict(model), "seed": opts.seed,
                             "checkpoint": os.path.abspath(opts.checkpoint) if opts.checkpoint else "",
                             "init_from": os.path.abspath(opts.init_from) if opts.init_from else "",
                             "val_every": opts.val_every if validates else 0, "select_by": opts.select_by},
                "evaluation": {"template": os.path.abspath(opts.template) if opts.template else "",
                               "color_match": opts.inference.color_match, "defringe": opts.inference.defringe,
                               "blend_mask": opts.inference.blend_mask, "sharpen": opts.inference.sharpen}}
    _invalidate(out, json.loads(json.dumps(settings)), say)
    dev = opts.device
    if not dev:
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"

    with budget.step(STEPS[0], "real videos from " + opts.data if opts.data else "synthetic speaker",
                     fixed["make the data"]):
        if opts.data:
            data = speaker.real_data(opts.data, os.path.join(out, "data"), say, holdout_s=opts.holdout_s,
                                     template=opts.template)
        else:
            data = speaker.make_synthetic_speaker(os.path.join(out, "data"), opts.speaker, say)
    gt_frames = sum(_num_frames(h.video) for h in data.heldout)
    if opts.data and trains:
        have = speaker.speech_seconds(data.train_dir)
        if have < speaker.MIN_SPEECH_S:
            say(f"warning: the training footage has {have:.0f} s of speech; a model of a mouth needs at least "
                f"{speaker.MIN_SPEECH_S:.0f} s (more videos of the person, or a shorter --holdout_s): expect a "
                f"blurred mouth")

    def reserve():
        """Seconds the steps after training will take: planning figures x this machine's measured slowdown."""
        return budget.post_training_s(gt_frames)

    checkpoint, sync_info, stage_info, validator = opts.checkpoint, None, {}, None
    m = model.mouth_region_size
    if checkpoint:
        for s in STEPS[1:5]:
            with budget.step(s, "skipped: --checkpoint given"):
                pass
    else:
        feats = ("mel",) if feature == "mel" else ("mel", feature)
        with budget.step(STEPS[1], f"{', '.join(feats)} features, {int(1.25 * m)} px crops", fixed["data pipeline"]):
            index = training.prepare_data(data.train_dir, os.path.join(out, "prepared"), int(1.25 * m),
                                          workers=min(2, os.cpu_count() or 1), progress=opts.progress, log=say,
                                          features=feats, audio_model_path=opts.inference.audio_model_path or "",
                                          profile=profile)
        models = os.path.join(out, "models")
        os.makedirs(models, exist_ok=True)
        budget.probe_generator(_probe_model(index, model, overrides, feature, warp_mode), m)
        train_s = budget.share(1.0, reserve())
        if not warned and planned is None and train_s < 0.9 * needed * budget.slowdown:
            say(f"warning: {train_s / 60:.1f} min are left for training: this machine runs "
                f"{budget.slowdown:.1f}x the planning figures, so the model will be undertrained")
        late = budget.elapsed() + reserve() - budget.total_s
        if late > OVERRUN * budget.total_s:
            say(f"warning: this machine runs {budget.slowdown:.1f}x the planning figures: dubbing and evaluating "
                f"alone will end this run about {late / 60:.1f} min past its budget")
        secs = budget.share(SHARES["syncnet"], reserve())
        with budget.step(STEPS[2], f"{opts.syncnet_steps} steps" if opts.syncnet_steps else f"about {secs:.0f} s"):
            sync_info = training.train_syncnet_timed(index, os.path.join(models, "syncnet.pth"), secs, m,
                                                     device=dev, log=say, steps=opts.syncnet_steps,
                                                     progress=opts.progress)
        if validates:
            validator = Validator(data.heldout[0].video, os.path.join(out, "validation"), sync_info["path"], dev,
                                  opts.select_by, log=say, inference=opts.inference)
        # your videos: no step cap (the caps are tuned for the synthetic demo's 18 short videos): train until the
        # budget is spent or validation stops improving
        check = validator.early_stop if validator else None
        common = dict(device=dev, seed=opts.seed, log=say, progress=opts.progress, model_overrides=overrides,
                      audio_feature=feature, warp_mode=warp_mode, val_every=opts.val_every if validates else 0)
        secs = budget.share(SHARES["frame"] / (SHARES["frame"] + SHARES["clip"]), reserve())
        what = f"from {os.path.basename(opts.init_from)}, " if opts.init_from else ""
        with budget.step(STEPS[3], what + (f"{opts.frame_steps} steps" if opts.frame_steps else f"about {secs:.0f} s")):
            stage_info["tiny"] = training.train_stage_timed(
                "tiny", index, models, "demo", secs, model, init_from=opts.init_from, max_steps=opts.frame_steps,
                cap_steps=0 if opts.data else model.frame_steps_cap,
                adv_warmup_steps=model.adv_warmup_steps if opts.init_from else None,
                validate=(lambda p, k: check(p, "tiny", k)) if validator else None, **common)
        secs = budget.share(1.0, reserve())
        frame_model = validator.best_path if validator and validator.best else stage_info["tiny"]["final"]
        with budget.step(STEPS[4], f"{opts.clip_steps} steps" if opts.clip_steps else f"about {secs:.0f} s"):
            stage_info["tiny_clip"] = training.train_stage_timed(
                "tiny_clip", index, models, "demo", secs, model, init_from=frame_model,
                syncnet_path=sync_info["path"], max_steps=opts.clip_steps,
                cap_steps=0 if opts.data else model.clip_steps_cap,
                validate=(lambda p, k: check(p, "tiny_clip", k)) if validator else None, **common)
        checkpoint = stage_info["tiny_clip"]["final"]
        if validator and validator.best:
            checkpoint = validator.best_path
            best = validator.best
            say(f"best checkpoint on the held-out segment: {best['stage']} step {best['step']} "
                f"({opts.select_by} {best[opts.select_by]:.3f}) -> {checkpoint}")
    sync_eval = opts.syncnet or (sync_info["path"] if sync_info else "")

    res_dir = os.path.join(out, "results")
    os.makedirs(res_dir, exist_ok=True)
    items = []
    with budget.step(STEPS[5], f"{len(data.heldout)} held-out sentence(s)", fixed["dub"]):
        dubber = dubbing.make_dubber(checkpoint, opts.inference, dev, os.path.join(out, "cache"), opts.progress)
        prepared = dubber.prepare_template(data.template)
        for h in data.heldout:
            paths = {k: os.path.join(res_dir, f"{h.name}_{k}.mp4") for k in ("dubbed", "template", "silence")}
            say(f"dubbing {h.name}: {h.text!r}")
            dubbing.dub(dubber, prepared, h.video, paths["dubbed"], checkpoint, data.template)
            wav = dubbing.silence_like(h.video, os.path.join(res_dir, f"{h.name}_silence.wav"))
            dubbing.dub(dubber, prepared, wav, paths["silence"], checkpoint, data.template)
            dubbing.template_baseline(data.template, h.video, paths["template"], _num_frames(h.video))
            items.append({"name": h.name, "text": h.text, "paths": paths, "gt_video": h.video, "item": h})
    with budget.step(STEPS[6], "landmarks + evaluation.evaluate on every video", fixed["evaluate"]):
        from utils.face.landmarks import LandmarkDetector

        det = LandmarkDetector()
        tracked: dict = {}             # each sentence's truth and template are scored against by four videos
        for it in items:
            h = it.pop("item")
            gt_open = speaker.load_openness(h)
            if gt_open is None:                 # real data: the truth is what the landmarks see on the original
                gt_open, _ = metrics.measured_openness(h.video, det)
            it["gt_openness"] = np.asarray(gt_open, np.float64).tolist()
            vids = {}
            truth = [("ground_truth", h.video)] if data.synthetic or data.template != h.video else []
            for key, path in list(it["paths"].items()) + truth:
                say(f"evaluating {os.path.basename(path)}")
                # every video is scored against the held-out speech (the silence baseline's own track is silent)
                vids[key] = metrics.video_metrics(path, h.video, np.asarray(gt_open), det, device=dev,
                                                  syncnet=sync_eval, audio=h.video, template=it["paths"]["template"],
                                                  landmark_cache=tracked)
            it["videos"] = vids
    with budget.step(STEPS[7]):
        first = items[0]
        gt0 = np.asarray(first["gt_openness"])
        shown = [("generated", first["videos"]["dubbed"]), ("template (original mouth)", first["videos"]["template"]),
                 ("silence-driven", first["videos"]["silence"])]
        if "ground_truth" in first["videos"]:
            shown.append(("ground-truth video, measured", first["videos"]["ground_truth"]))
        plot = figures.openness_plot([(n, np.asarray(v["openness"]), v["openness_corr"]) for n, v in shown], gt0,
                                     os.path.join(out, "openness.png"),
                                     f"{first['name']}: {first['text']}")
        box = _mouth_box(first["gt_video"], data.template)
        picks = figures.pick_frames(gt0)
        sbs = figures.side_by_side([("input (template)", data.template), ("generated", first["paths"]["dubbed"]),
                                    ("ground truth", first["gt_video"])], picks,
                                   os.path.join(out, "side_by_side.png"), box=box, gt_openness=gt0,
                                   notes={"input (template)": _notes(first["videos"].get("template")),
                                          "generated": _notes(first["videos"]["dubbed"]),
                                          "ground truth": ["(the reference of the figures)"]})
        if opts.save_picture:
            os.makedirs(os.path.dirname(os.path.abspath(opts.save_picture)), exist_ok=True)
            shutil.copyfile(sbs, opts.save_picture)
        rel = lambda p: os.path.relpath(p, out)  # noqa: E731
        summary = {"mean": _summary_mean(items)}
        result = {
            "synthetic": data.synthetic,
            "heldout": [{"name": it["name"], "text": it["text"], "videos": _strip(it["videos"]),
                         "gt_openness": it["gt_openness"],
                         "openness": {k: v["openness"] for k, v in it["videos"].items()}} for it in items],
            "mean": summary["mean"],
            "artefacts": {"dubbed_mp4": rel(first["paths"]["dubbed"]), "template_mp4": rel(first["paths"]["template"]),
                          "silence_mp4": rel(first["paths"]["silence"]), "side_by_side_png": rel(sbs),
                          "openness_png": rel(plot), "report_html": "report.html", "report_md": "report.md",
                          "metrics_json": "metrics.json"},
            "setup": _setup(opts, data, checkpoint, sync_info, stage_info, dev),
            "syncnet": sync_info, "training": stage_info,
            "validation": validator.history if validator else [],
            "best": validator.best if validator else None,
        }
        reconstruction = not data.synthetic and data.template == data.heldout[0].video
        result["quality_bar"] = report.quality_bar(result, opts.min_corr,
                                                   ("silence",) if reconstruction else ("template", "silence"))
        result["timings"] = dict(budget.timings)
        result["timings"]["total"] = round(budget.elapsed(), 1)
        report.write_metrics(os.path.join(out, "metrics.json"), metrics.finite_tree(result))
        report.write_report(out, result)
    result["timings"] = dict(budget.timings, total=round(budget.elapsed(), 1))
    report.write_metrics(os.path.join(out, "metrics.json"), metrics.finite_tree(result))
    say(f"report: {os.path.join(out, 'report.html')} (total {budget.elapsed() / 60:.1f} min)")
    return result


def _notes(v: dict | None) -> list[str]:
    """A video's appearance figures against the truth, for the side-by-side picture."""
    if not v:
        return []
    f = lambda k, spec: "n/a" if v.get(k) is None else spec.format(v[k])  # noqa: E731
    return [f"skin dE {f('skin_de_mean', '{:.2f}')} (p99 {f('skin_de_p99', '{:.1f}')}), "
            f"lower face {f('lower_de_mean', '{:.1f}')}",
            f"edge dE p99 {f('edge_de_p99', '{:.1f}')}, fringe p99 {f('fringe_p99', '{:.1f}')}, "
            f"sharp {f('mouth_sharpness', '{:.2f}')}",
            f"openness r {f('openness_corr', '{:+.2f}')}, PSNR mouth {f('psnr_mouth', '{:.1f}')}"]


def _strip(videos: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("openness", "openness_valid")} for k, v in videos.items()}


def _num_frames(video: str) -> int:
    return count_frames(video, FPS)


def _mouth_box(gt_video: str, template: str):
    """Lower-face box for the pictures: from the rendering's ground-truth landmarks when there are some, else
    from landmarks tracked on the template's first frames."""
    info = probe(template)
    gt_npz = os.path.splitext(gt_video)[0] + ".gt.npz"
    if os.path.isfile(gt_npz):
        lm = np.load(gt_npz)["landmarks"]
    else:
        from utils.face.landmarks import LandmarkDetector, track_landmarks

        lm, valid = track_landmarks(iter_frames(template, fps=FPS, max_frames=25), LandmarkDetector(),
                                    progress=False)
        if not valid.any():
            return None
        lm = lm[valid]
    from demo.figures import mouth_box_from_landmarks

    return mouth_box_from_landmarks(lm, (info.height, info.width))


def _setup(opts, data, checkpoint, sync_info, stage_info, dev) -> dict:
    s = {"device": dev, "time budget (min)": opts.minutes, "checkpoint": os.path.relpath(checkpoint, opts.output_dir)
         if not opts.checkpoint else opts.checkpoint}
    if data.synthetic:
        sp = opts.speaker
        s.update({"data": "synthetic (utils/synthetic/)", "voice": sp.voice, "video size": sp.size,
                  "training videos": f"{sp.train_sentences} sentences x {len(sp.speeds)} speeds {list(sp.speeds)}",
                  "held-out sentences": "; ".join(h.text for h in data.heldout),
                  "template": f"new take of a training sentence: {data.template_text!r}"})
    else:
        s.update({"data": f"real videos from {opts.data}", "held out": data.heldout[0].video,
                  "template": data.template if data.template != data.heldout[0].video else "the held-out footage "
                              "itself (reconstruction)"})
        if opts.init_from:
            s["initialised from"] = opts.init_from
    if not opts.checkpoint:
        md = opts.model
        s.update({"model": f"tiny LawDNet, mouth {md.mouth_region_size}, encoder {list(md.encoder_channels)}, "
                           f"align {md.align_channels}, attn {md.attn_dim}, decoder {md.decoder_channels}, "
                           f"coarse grid {md.coarse_grid_size}, warp {md.warp_mode}",
                  "training": f"batch {md.batch_size} (clip stage {md.clip_batch_size} clips of 5), lr {md.lr}, "
                              f"pixel MSE weight {md.img_weight}, no perceptual loss (no VGG weights offline); "
                              f"clip stage: sync loss weight {md.sync_weight}, adversarial terms ramped in over "
                              f"{md.adv_warmup_steps} steps"})
        for k, v in stage_info.items():
            s[f"{k} stage"] = f"{v['steps']} steps in {v['seconds']:.0f} s, final image MSE {v['loss_img']:.4f}"
        if sync_info:
            s["SyncNet"] = f"{sync_info['steps']} steps, held-out sync accuracy {sync_info['val_accuracy']:.3f}"
    return s
