"""The dubbing service and batch dubbing on a local Ray cluster (127.0.0.1 only, started and shut down here):
2 CPU replicas of the tiny model behind Ray Serve, a replica SIGKILLed mid-job, a restarted gateway, and a
6-row batch manifest with a missing file and a faceless video (docs/cluster.md)."""
import csv
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

# Ray's own switch for a loopback-only cluster (its default on macOS / Windows): every node and worker uses
# 127.0.0.1. Read when ray is imported, so set before that (Ray alone reads it).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from client_LawDNet import LawDNetClient  # noqa: E402
from server.config import from_dict  # noqa: E402
from utils.media.audio_io import load_audio, save_wav  # noqa: E402
from utils.media.timebase import num_video_frames
from utils.media.video_io import VideoWriter, probe  # noqa: E402
from models.tiny import write_tiny_checkpoint  # noqa: E402
from utils.synthetic.speech import synthesize_speech  # noqa: E402
from utils.synthetic.talking_head import make_talking_head  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["One.", "Two birds.", "Open the door.", "Good morning."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    ckpt = write_tiny_checkpoint(root / "tiny.pth")
    video = make_talking_head(root / "face.mp4", "Hello there.", size=128, head_motion=0.3,
                              preset="veryfast")["video"]
    audios = []
    for i, text in enumerate(TEXTS):
        speech, sr, _ = synthesize_speech(text)
        save_wav(root / f"speech{i}.wav", speech, sr)
        audios.append(str(root / f"speech{i}.wav"))
    speech, sr, _ = synthesize_speech("Good morning. Open the door. Two birds. One.")
    long_audio = np.concatenate([speech] * 3)          # ~8 s: long enough to be killed mid-job
    save_wav(root / "long.wav", long_audio, sr)
    save_wav(root / "longer.wav", np.concatenate([long_audio] * 4), sr)   # ~32 s: outlasts a 1 s shutdown grace
    faceless = str(root / "faceless.mp4")              # a grey video: no face anywhere
    with VideoWriter(faceless, 25, preset="veryfast") as w:
        for _ in range(20):
            w.write(np.full((128, 128, 3), 120, np.uint8))
    return {"root": root, "ckpt": ckpt, "video": video, "audios": audios, "long": str(root / "long.wav"),
            "longer": str(root / "longer.wav"), "faceless": faceless}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module: 2 logical CPUs, every process on 127.0.0.1; always shut down."""
    try:
        ray.init(num_cpus=2, include_dashboard=False, namespace="lawdnet", object_store_memory=300 * 2 ** 20,
                 runtime_env={"env_vars": {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}}, log_to_driver=False)
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield
    finally:
        ray.shutdown()


def _replica(k):
    from server.cluster import NAMESPACE, replica_name

    return ray.get_actor(replica_name(k), namespace=NAMESPACE)


def _ask(k, method, default):
    """A replica's answer, or ``default`` while it restarts."""
    try:
        return ray.get(getattr(_replica(k), method).remote(), timeout=30)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return default


@pytest.fixture(scope="class")   # torn down after TestService: the batch test needs the CPUs
def service(cluster, assets):
    from ray import serve

    from server import ray_serve

    cfg = from_dict(checkpoint=assets["ckpt"], device="cpu", data_dir=str(assets["root"] / "shared"),
                    host="127.0.0.1", port=_free_port(), replicas=2, cpus_per_replica=1, batch_size=8,
                    max_batch_frames=32, max_template_seconds=10.0, template_face_search_seconds=2.0,
                    shutdown_grace_s=1).validate()
    try:
        ray_serve.start(cfg)
        url = f"http://127.0.0.1:{cfg.port}"
        client = LawDNetClient(url, retries=0, timeout=300)
        client.wait_until_up(120)
        tid = client.upload_template(assets["video"])["template_id"]
        yield {"cfg": cfg, "url": url, "client": client, "tid": tid}
        client.close()
    finally:
        ray_serve.stop(cfg)
        serve.shutdown()


class TestService:
    def test_requests_reach_both_replicas(self, assets, service, tmp_path):
        url, tid = service["url"], service["tid"]
        jobs = [(assets["audios"][i], tmp_path / f"out{i}.mp4") for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda a: LawDNetClient(url, retries=0, timeout=300).dub(tid, *a), jobs))
        for (audio, out), r in zip(jobs, results):
            expect = num_video_frames(len(load_audio(audio, 16000)), 16000)
            assert r["frames"] == expect and probe(out).num_frames == expect
        frames = [ray.get(_replica(k).metrics.remote())["counters"].get("frames_generated_total", 0)
                  for k in range(2)]
        assert all(f > 0 for f in frames), f"frames generated per replica: {frames}"
        m = service["client"].metrics()
        assert m["counters"]["frames_generated_total"] >= sum(r["frames"] for r in results)
        assert service["client"].health()["model"]["replicas_up"] == 2
        # the template is on the shared data_dir, listed through the gateway
        assert [t["template_id"] for t in service["client"].list_templates()] == [tid]

    def test_live_session_on_one_replica_closed_when_it_dies(self, assets, service):
        import asyncio

        import websockets

        from utils.live_protocol import unpack_frame

        url = service["url"].replace("http://", "ws://") + f"/v1/live/ws?template_id={service['tid']}"
        pcm = (np.clip(load_audio(assets["audios"][2], 16000), -1, 1) * 32767).astype("<i2").tobytes()

        async def session(kill: bool):
            async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
                ready = json.loads(await asyncio.wait_for(ws.recv(), 120))
                assert ready["type"] == "ready", ready
                sid = ready["session_id"]
                owner = [k for k in range(2) if sid in _ask(k, "live_sessions", [])]
                assert len(owner) == 1                     # one replica holds it for its lifetime
                for i in range(0, len(pcm), 3200):
                    await ws.send(pcm[i:i + 3200])
                got = []
                while len(got) < 15:
                    msg = await asyncio.wait_for(ws.recv(), 60)
                    if isinstance(msg, bytes):
                        got.append(unpack_frame(msg)[0]["k"])
                assert got == list(range(15))               # every frame, in order, through the relay
                if not kill:
                    await ws.send(json.dumps({"type": "close"}))
                    return owner[0]
                os.kill(ray.get(_replica(owner[0]).info.remote())["pid"], signal.SIGKILL)
                end = time.time() + 60
                while True:
                    msg = await asyncio.wait_for(ws.recv(), max(1.0, end - time.time()))
                    if isinstance(msg, str):
                        closed = json.loads(msg)
                        break
                assert closed["type"] == "closed" and "lost" in closed["reason"], closed
                return owner[0]

        killed = asyncio.run(session(kill=True))
        assert asyncio.run(session(kill=False)) != killed          # a new session at once, on the other replica

    def test_cancel_reaches_the_replica(self, assets, service):
        c = service["client"]
        job_id = c.submit(service["tid"], assets["long"])["job_id"]
        end = time.time() + 120
        while c.job(job_id)["frames_done"] < 5:
            assert time.time() < end
            time.sleep(0.2)
        assert c.delete_job(job_id)["status"] == "cancelled"
        assert all(job_id not in _ask(k, "running_jobs", []) for k in range(2))
        assert not os.path.exists(assets["root"] / "shared" / "results" / job_id)

    def test_replica_killed_mid_job_completes_and_restart_serves_results(self, assets, service, tmp_path):
        from server import ray_serve

        c, tid = service["client"], service["tid"]
        job_id = c.submit(tid, assets["long"])["job_id"]
        end = time.time() + 120
        while True:                      # wait until it renders, then SIGKILL the replica that has it
            st = c.job(job_id)
            running = {k: _ask(k, "running_jobs", []) for k in range(2)}
            owner = [k for k, ids in running.items() if job_id in ids]
            if st["frames_done"] >= 10 and owner:
                break
            assert st["status"] in ("queued", "running") and time.time() < end, st
            time.sleep(0.2)
        before = st["frames_done"]
        info = ray.get(_replica(owner[0]).info.remote())
        os.kill(info["pid"], signal.SIGKILL)
        seen_restart = False
        while True:
            st = c.job(job_id)
            assert st["status"] in ("queued", "running", "succeeded"), st      # never failed, never lost
            seen_restart |= st["frames_done"] < before
            if st["status"] == "succeeded":
                break
            assert time.time() < end + 120, st
            time.sleep(0.2)
        assert seen_restart, "the progress should restart on the other replica"
        out = tmp_path / "long.mp4"
        c.download(job_id, out)
        expect = num_video_frames(len(load_audio(assets["long"], 16000)), 16000)
        assert probe(out).num_frames == expect
        rec = json.load(open(assets["root"] / "shared" / "results" / job_id / "job.json"))
        assert rec["status"] == "succeeded"
        # Ray restarted the killed replica (a new process)
        end = time.time() + 90
        while True:
            try:
                if ray.get(_replica(owner[0]).info.remote(), timeout=5)["pid"] != info["pid"]:
                    break
            except Exception:
                pass
            assert time.time() < end, "the killed replica did not come back"
            time.sleep(0.5)
        # a restarted gateway still serves the finished result and the stored template, and finishes the async
        # job the stopped one had accepted (its grace, 1 s, is too short for it)
        import dataclasses

        import httpx
        from ray import serve

        pending = c.submit(tid, assets["longer"])["job_id"]
        while c.job(pending)["frames_done"] < 5:
            assert time.time() < end + 240
            time.sleep(0.2)
        serve.delete(ray_serve.APP_NAME)
        folder = assets["root"] / "shared" / "results" / pending
        # handed over for the next gateway (pending.json), unless a fast machine finished it within the grace
        handed_over = (folder / "pending.json").exists()
        if handed_over:
            assert json.load(open(folder / "pending.json"))["template_id"] == tid
        else:
            assert json.load(open(folder / "job.json"))["status"] == "succeeded"
        ray_serve.start(dataclasses.replace(service["cfg"], api_key="k3y"))    # now with an API key
        c2 = LawDNetClient(service["url"], api_key="k3y", retries=0, timeout=300)
        c2.wait_until_up(120)
        assert c2.job(job_id)["status"] == "succeeded"
        out2 = tmp_path / "again.mp4"
        c2.download(job_id, out2)
        assert probe(out2).num_frames == expect
        assert [t["template_id"] for t in c2.list_templates()] == [tid]
        end = time.time() + 180
        while (st := c2.job(pending))["status"] != "succeeded":
            assert st["status"] in ("queued", "running") and time.time() < end, st
            time.sleep(0.3)
        c2.download(pending, tmp_path / "resumed.mp4")
        assert probe(tmp_path / "resumed.mp4").num_frames == num_video_frames(len(load_audio(assets["longer"],
                                                                                            16000)), 16000)
        c2.close()
        r = httpx.get(f"{service['url']}/v1/jobs/{job_id}", timeout=30)     # the key is enforced as on one machine
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_batch_on_ray_six_rows_two_errors_and_rerun_does_nothing(cluster, assets, tmp_path):
    from inference.batch import ALREADY, DUBBED, FAILED, BatchOptions, run_batch

    from config.config import InferenceConfig

    man = tmp_path / "jobs.csv"
    rows = [(assets["video"], assets["audios"][i], f"ok{i}.mp4") for i in range(4)]
    rows += [(str(tmp_path / "missing.mp4"), assets["audios"][0], "missing.mp4"),
             (assets["faceless"], assets["audios"][1], "faceless.mp4")]
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["template", "audio", "output"])
        w.writerows(rows)
    out = tmp_path / "out"
    opts = BatchOptions(checkpoint=assets["ckpt"], out_dir=str(out), ray="auto", workers=2,
                        inference=InferenceConfig(device="cpu"), progress=False)
    first = run_batch(man, opts)
    assert [r.status for r in first] == [DUBBED] * 4 + [FAILED] * 2
    assert sorted(os.listdir(out)) == sorted([f"ok{i}.mp4" for i in range(4)] + [
        ".batch_done.jsonl", ".cache", "summary.csv", "summary.json"])
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    errors = [r for r in summary if r["status"] == FAILED]
    assert len(summary) == 6 and len(errors) == 2
    assert "not found" in errors[0]["error"] and "no face" in errors[1]["error"]
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out) if p.endswith(".mp4")}
    second = run_batch(man, opts)
    assert [r.status for r in second] == [ALREADY] * 4 + [FAILED] * 2
    assert {p: os.stat(out / p).st_mtime_ns for p in mtimes} == mtimes
    assert json.load(open(out / "summary.json"))["frames_dubbed"] == 0
