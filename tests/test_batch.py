"""Batch dubbing on one machine (inference/batch.py), the object-store code path of the cluster service
(server/object_store.py, fsspec's memory filesystem) and that the one-machine path never imports Ray."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_one_machine_path_never_imports_ray():
    code = ("import sys, server_LawDNet, server.app, server.service, inference.batch, inference_function, "
            "client_LawDNet\n"
            "server_LawDNet.build_parser(); inference.batch.build_parser()\n"
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'server.cluster', "
            "'server.ray_serve', 'inference.batch_ray')))\n"
            "assert not bad, bad\n")
    r = _run(["-c", code], ROOT)
    assert r.returncode == 0, r.stderr


def test_manifest_mistakes_are_one_error_line(tmp_path):
    missing = _run(["-m", "inference.batch", "--manifest", str(tmp_path / "nope.csv"), "--out_dir",
                    str(tmp_path / "out"), "--checkpoint", "x.pth"], ROOT)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.csv'}: manifest not found"
    bad = tmp_path / "bad.csv"
    bad.write_text("video,speech,out\na.mp4,b.wav,c.mp4\n")
    r = _run(["-m", "inference.batch", "--manifest", str(bad), "--out_dir", str(tmp_path / "out"),
              "--checkpoint", "x.pth"], ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "missing column(s) template, audio, output" in line
    dup = tmp_path / "dup.csv"
    dup.write_text("template,audio,output\na.mp4,b.wav,c.mp4\nd.mp4,e.wav,c.mp4\n")
    r = _run(["-m", "inference.batch", "--manifest", str(dup), "--out_dir", str(tmp_path / "out"),
              "--checkpoint", "x.pth"], ROOT)
    assert r.returncode == 2 and "lines 2 and 3 write the same output" in r.stderr


def test_object_store_templates_and_results(tmp_path):
    pytest.importorskip("fsspec")
    from server.object_store import ObjectStore
    from server.storage import Storage

    store = ObjectStore(f"memory://lawdnet-test-{os.getpid()}")
    a, b = Storage(tmp_path / "node_a"), Storage(tmp_path / "node_b")
    tid = "ab" * 12
    video = tmp_path / "upload.bin"
    video.write_bytes(os.urandom(5000))
    cache = os.path.join(a.cache, "video-0123.npz")
    with open(cache, "wb") as f:
        f.write(b"landmarks")
    a.commit_template(tid, str(video), {"template_id": tid, "frames": 3})
    assert store.list_template_ids() == [] and not store.pull_template(b, tid)
    store.push_template(a, tid, cache)
    assert store.list_template_ids() == [tid] and store.template_meta(tid)["frames"] == 3
    assert store.pull_template(b, tid)                       # another node gets it, landmark cache included
    assert b.list_template_ids() == [tid] and b.read_template_meta(tid) == {"template_id": tid, "frames": 3}
    assert open(b.template_video(tid), "rb").read() == open(a.template_video(tid), "rb").read()
    assert open(os.path.join(b.cache, "video-0123.npz"), "rb").read() == b"landmarks"
    store.delete_template(tid)
    assert store.list_template_ids() == [] and store.template_meta(tid) is None
    # results: the replica publishes the mp4, the gateway the record; another node fetches them
    out = tmp_path / "out.mp4"
    out.write_bytes(b"mp4" * 100)
    store.put_output("job1", str(out))
    store.put_record("job1", {"status": "succeeded"})
    assert store.local_output("job1") == "" and store.result_record("job1") == {"status": "succeeded"}
    store.fetch_output("job1", str(tmp_path / "fetched.mp4"))
    assert (tmp_path / "fetched.mp4").read_bytes() == b"mp4" * 100
    store.delete_result("job1")
    assert store.result_record("job1") is None
    # an accepted async job until it ends: listed for the next gateway, then dropped
    jid = "cd" * 12
    out.write_bytes(b"pcm")
    store.put_pending(jid, str(out), {"template_id": tid, "created": 1.0})
    assert store.pending_jobs() == [(jid, {"template_id": tid, "created": 1.0})]
    store.fetch_input(jid, str(tmp_path / "in.wav"))
    assert (tmp_path / "in.wav").read_bytes() == b"pcm"
    store.put_record(jid, {"status": "succeeded"})
    assert store.pending_jobs() == []                      # finished: not resumed even before the drop
    store.drop_pending(jid)
    store.delete_result(jid)
    # a shared folder is a store too (what the shared-path mode uses for results): moved in, served in place
    shared = ObjectStore(str(tmp_path / "shared"))
    out.write_bytes(b"x" * 10)
    shared.put_output("job2", str(out))
    assert not out.exists() and open(shared.local_output("job2"), "rb").read() == b"x" * 10


@pytest.mark.slow
def test_local_batch_resumes_and_reports_bad_rows(tmp_path):
    from config.config import InferenceConfig
    from inference.batch import ALREADY, DUBBED, FAILED, BatchOptions, run_batch
    from utils.media.audio_io import save_wav
    from utils.media.video_io import probe
    from models.tiny import write_tiny_checkpoint
    from utils.synthetic.speech import synthesize_speech
    from utils.synthetic.talking_head import make_talking_head

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pth")
    make_talking_head(tmp_path / "face.mp4", "Hello.", size=128, head_motion=0.3, preset="veryfast")
    for i, text in enumerate(["One.", "Two birds."]):
        speech, sr, _ = synthesize_speech(text)
        save_wav(tmp_path / f"s{i}.wav", speech, sr)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    man = tmp_path / "jobs.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["template", "audio", "output", "note"])
        w.writerows([["face.mp4", "s0.wav", "a/one.mp4", "x"], ["face.mp4", "corrupt.wav", "bad.mp4", ""],
                     ["face.mp4", "s1.wav", "two.mp4", ""]])
    out = tmp_path / "out"
    opts = BatchOptions(checkpoint=ckpt, out_dir=str(out), inference=InferenceConfig(device="cpu"), progress=False)
    first = run_batch(man, opts)
    assert [r.status for r in first] == [DUBBED, FAILED, DUBBED]
    assert probe(out / "a" / "one.mp4").num_frames == first[0].frames > 0
    assert "corrupt.wav" in first[1].error and not (out / "bad.mp4").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".tmp_")]
    # the template was analysed once: one landmark cache file
    assert len([p for p in os.listdir(out / ".cache") if p.endswith(".npz")]) == 1
    summary = json.load(open(out / "summary.json"))
    assert summary["counts"] == {DUBBED: 2, ALREADY: 0, FAILED: 1}
    # a crash after the first row: its record survives; the re-run does only what is left
    with open(out / ".batch_done.jsonl") as f:
        lines = f.readlines()
    with open(out / ".batch_done.jsonl", "w") as f:
        f.write(lines[0] + '{"key": "cut by a cr')
    os.remove(out / "two.mp4")
    before = os.stat(out / "a" / "one.mp4").st_mtime_ns
    second = run_batch(man, opts)
    assert [r.status for r in second] == [ALREADY, FAILED, DUBBED]
    assert os.stat(out / "a" / "one.mp4").st_mtime_ns == before
    third = run_batch(man, opts)
    assert [r.status for r in third] == [ALREADY, FAILED, ALREADY]
    with open(out / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == [ALREADY, FAILED, ALREADY]
    assert np.isfinite(summary["frames_per_second"])


def test_cluster_flags_parse_without_ray(tmp_path):
    import server_LawDNet

    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    cfg = server_LawDNet.config_from_args(["--checkpoint", str(ckpt), "--ray", "auto", "--replicas", "3",
                                           "--gpus_per_replica", "1", "--store_url", "s3://bucket/lawdnet",
                                           "--device", "cuda"])
    assert (cfg.ray, cfg.replicas, cfg.gpus_per_replica, cfg.store_url, cfg.inference.device) == \
        ("auto", 3, 1.0, "s3://bucket/lawdnet", "cuda")
    assert server_LawDNet.config_from_args(["--checkpoint", str(ckpt)]).ray == ""
