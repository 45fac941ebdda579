"""The HTTP dubbing server under real conditions: uvicorn on a free loopback port (in a thread), a tiny real
LawDNet checkpoint, a synthetic talking-head template and espeak-ng speech; the client of client_LawDNet.py."""
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
import uvicorn

from client_LawDNet import ApiClientError, LawDNetClient
from config.config import ModelConfig
from models import LawDNet
from models.checkpoint import save_lawdnet
from server_LawDNet import create_app
from utils.media.audio_io import load_audio, num_video_frames, save_wav
from utils.synthetic.speech import synthesize_speech
from utils.synthetic.talking_head import make_talking_head
from utils.media.video_io import probe, read_frames

TEXTS = ["One.", "Two birds.", "Open the door.", "Good morning."]


class LiveServer:
    """uvicorn serving ``create_app(config)`` on a socket bound to a free 127.0.0.1 port, in a thread."""

    def __init__(self, **config):
        self.app = create_app(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=20))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        end = time.time() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < end, "server did not start"
            time.sleep(0.05)

    @property
    def service(self):
        return self.app.state.service

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    torch.manual_seed(0)
    cfg = ModelConfig(audio_channel=80, encoder_channels=(8, 16, 32), align_channels=16, attn_dim=32,
                      decoder_channels=16, warp_mode="corrected", coarse_grid_size=16)
    ckpt = root / "tiny.pth"
    save_lawdnet(ckpt, LawDNet(cfg), audio_feature="mel", mouth_region_size=64)
    video = make_talking_head(root / "face.mp4", "Hello there.", size=128, head_motion=0.3,
                              preset="veryfast")["video"]
    audios = []
    for i, text in enumerate(TEXTS):
        speech, sr, _ = synthesize_speech(text)
        path = root / f"speech{i}.wav"
        save_wav(path, speech, sr)
        audios.append(str(path))
    return {"root": root, "ckpt": str(ckpt), "video": video, "audios": audios}


@pytest.fixture(scope="module")
def live(assets):
    srv = LiveServer(checkpoint=assets["ckpt"], device="cpu", data_dir=str(assets["root"] / "data"),
                     max_active_jobs=4, max_queue=4, max_audio_mb=0.5, max_audio_seconds=4.0, batch_size=8,
                     max_batch_frames=32, batch_wait_ms=20)
    client = LawDNetClient(srv.url, retries=0)
    tid = client.upload_template(assets["video"])["template_id"]
    yield {"srv": srv, "client": client, "tid": tid, "tmp": os.path.join(srv.service.storage.tmp)}
    client.close()
    srv.stop()
    assert os.listdir(srv.service.storage.tmp) == []


def _healthy(live):
    assert live["client"].health()["status"] == "ok"


def _mouth(frames):
    """The lower-middle part of the face, where the generated mouth is pasted."""
    h, w = frames.shape[1:3]
    return frames[:, h // 2:, w // 4: 3 * w // 4].astype(np.float32)


def test_eight_concurrent_dubs_distinct_and_correct(assets, live, tmp_path):
    from inference import Dubber

    c, tid = live["client"], live["tid"]
    jobs = [(assets["audios"][i % 4], tmp_path / f"out{i}.mp4") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda a: LawDNetClient(live["srv"].url, retries=0).dub(tid, *a), jobs))
    assert len({r["job_id"] for r in results}) == 8
    mouths = []
    for (audio, out), r in zip(jobs, results):
        info = probe(out)
        n_in = len(load_audio(audio, 16000))
        expect = num_video_frames(n_in, 16000)
        assert r["frames"] == expect and info.num_frames == expect
        assert abs(len(load_audio(str(out), 16000)) - n_in) / 16000 < 0.05      # the audio's duration
        mouths.append(_mouth(read_frames(out)))
    def diff(a, b):
        n = min(len(a), len(b))
        return float(np.abs(a[:n] - b[:n]).mean())
    for i in range(4):           # same audio -> same video (batching is exact); other audio -> another mouth
        assert diff(mouths[i], mouths[i + 4]) < 0.05
        for j in range(i + 1, 4):
            assert diff(mouths[i], mouths[j]) > 0.25
    # frames of concurrent jobs were merged into shared model calls (each job sends at most 8)
    assert c.metrics()["largest_batch_frames"] > 8
    # the server's output equals the library pipeline run directly (own model instance, no batching)
    ref = tmp_path / "ref.mp4"
    d = Dubber(assets["ckpt"], device="cpu", cache_dir=live["srv"].service.storage.cache, progress=False)
    d.dub(d.prepare_template(assets["video"]), assets["audios"][1], ref)
    assert np.abs(read_frames(ref).astype(np.float32) - read_frames(jobs[1][1]).astype(np.float32)).mean() < 1.0
    assert os.listdir(live["tmp"]) == []
    _healthy(live)


def test_bad_requests_get_clear_statuses(assets, live, tmp_path):
    url, tid = live["srv"].url, live["tid"]
    audio = assets["audios"][0]
    data_root = live["srv"].service.storage.root

    def post(files=None, data=None, **kw):
        r = httpx.post(f"{url}/v1/dub", files=files, data=data, timeout=120, **kw)
        _healthy(live)
        return r

    with open(audio, "rb") as f:
        wav = f.read()
    # a path-traversal filename is simply ignored: the upload is stored under a server name
    r = post({"audio": ("../../../../escape_test.wav", wav, "audio/wav")}, {"template_id": tid})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and len(r.content) > 1000
    for d in (data_root, os.path.dirname(data_root), str(tmp_path), "/tmp"):
        assert not os.path.exists(os.path.join(d, "escape_test.wav"))
    # oversize upload (limit 0.5 MB)
    r = post({"audio": ("big.wav", os.urandom(800_000), "audio/wav")}, {"template_id": tid})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    # not media at all
    r = post({"audio": ("notes.wav", b"this is not audio" * 100, "application/octet-stream")}, {"template_id": tid})
    assert r.status_code == 422 and "decode" in r.json()["detail"]
    assert data_root not in r.json()["detail"]                        # no server paths in messages
    # wrong content types: the body and a part
    r = post(json={"template_id": tid})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = post({"audio": ("a.txt", wav, "text/plain")}, {"template_id": tid})
    assert r.status_code == 415
    # unknown / malformed template id, missing fields, bad flag
    for bad in ("0123456789abcdef01234567", "../etc"):
        r = post({"audio": ("a.wav", wav, "audio/wav")}, {"template_id": bad})
        assert r.status_code == 404 and r.json()["error"] == "template_not_found"
    assert post({"audio": ("a.wav", wav, "audio/wav")}).status_code == 400
    assert post({"other": ("a.wav", wav, "audio/wav")}, {"template_id": tid}).status_code == 400
    assert post({"audio": ("a.wav", wav, "audio/wav")}, {"template_id": tid, "async": "maybe"}).status_code == 400
    # audio longer than the 4 s limit (small file: 5 s of 8 kHz silence)
    long = tmp_path / "long.wav"
    save_wav(long, np.zeros(5 * 8000, np.float32), 8000)
    r = post({"audio": ("long.wav", long.read_bytes(), "audio/wav")}, {"template_id": tid})
    assert r.status_code == 422 and r.json()["error"] == "audio_too_long"
    # unknown job, unknown route: JSON errors too
    r = httpx.get(f"{url}/v1/jobs/deadbeefdeadbeef")
    assert r.status_code == 404 and r.json()["error"] == "job_not_found"
    assert httpx.get(f"{url}/nope").json()["error"] == "not_found"
    # a template upload that is not a video
    r = httpx.post(f"{url}/v1/templates", files={"video": ("x.mp4", wav, "video/mp4")})
    assert r.status_code == 422 and r.json()["error"] == "unprocessable_media"
    assert os.listdir(live["tmp"]) == []


def test_full_queue_503_then_recovers(assets, live):
    svc, url, tid = live["srv"].service, live["srv"].url, live["tid"]
    short = assets["audios"][0]
    c = live["client"]
    svc.batcher.pause()              # hold the model: jobs pile up deterministically
    try:
        ids = [c.submit(tid, short)["job_id"] for _ in range(8)]       # 4 running + 4 waiting = capacity
        with open(short, "rb") as f:
            r = httpx.post(f"{url}/v1/dub", files={"audio": ("s.wav", f, "audio/wav")}, data={"template_id": tid})
        assert r.status_code == 503 and r.json()["error"] == "queue_full"
        assert int(r.headers["retry-after"]) >= 1
        st = c.job(ids[-1])
        assert st["status"] == "queued" and st["queue_position"] >= 1
        _healthy(live)
    finally:
        svc.batcher.resume()
    for j in ids:
        assert c.wait(j, poll_s=0.2, timeout_s=120)["status"] == "succeeded"
        assert httpx.get(f"{url}/v1/jobs/{j}/result").headers["content-type"] == "video/mp4"
        c.delete_job(j)
    assert os.listdir(live["tmp"]) == []


def test_client_disconnect_cancels_and_cleans(assets, live):
    svc, tid = live["srv"].service, live["tid"]
    before = svc.metrics.snapshot()["counters"].get("jobs_cancelled_total", 0)
    svc.batcher.pause()
    try:
        impatient = LawDNetClient(live["srv"].url, retries=0, timeout=2.0)
        with pytest.raises(Exception):
            impatient.dub(tid, assets["audios"][2], live["srv"].service.storage.root + "/never.mp4")
        impatient.close()
        end = time.time() + 20
        while svc.metrics.snapshot()["counters"].get("jobs_cancelled_total", 0) == before:
            assert time.time() < end, "the server did not notice the disconnect"
            time.sleep(0.1)
    finally:
        svc.batcher.resume()
    end = time.time() + 20
    while os.listdir(live["tmp"]) and time.time() < end:
        time.sleep(0.1)
    assert os.listdir(live["tmp"]) == []
    _healthy(live)


def test_restart_reuses_templates_api_key_and_graceful_shutdown(assets, live, tmp_path):
    data = live["srv"].service.storage.root
    cache_files = sorted(os.listdir(os.path.join(data, "cache")))
    # a second server on the same data folder (the first keeps running) with an API key
    srv = LiveServer(checkpoint=assets["ckpt"], device="cpu", data_dir=data, api_key="s3cret", shutdown_grace_s=20)
    try:
        assert httpx.get(f"{srv.url}/healthz").status_code == 200          # open without a key
        r = httpx.get(f"{srv.url}/v1/templates")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert httpx.get(f"{srv.url}/v1/templates", headers={"X-API-Key": "wrong"}).status_code == 401
        c = LawDNetClient(srv.url, api_key="s3cret", retries=0)
        assert [t["template_id"] for t in c.list_templates()] == [live["tid"]]
        assert httpx.get(f"{srv.url}/metrics", headers={"X-API-Key": "s3cret"}).text.startswith("# HELP")
        out = c.dub(live["tid"], assets["audios"][3], tmp_path / "again.mp4")
        assert out["frames"] == probe(tmp_path / "again.mp4").num_frames
        assert sorted(os.listdir(os.path.join(data, "cache"))) == cache_files      # no new analysis
        # same video again: same id, nothing new stored
        again = c.upload_template(assets["video"])
        assert again["template_id"] == live["tid"]
        # graceful shutdown with a job in flight: it finishes (or is cleanly cancelled), nothing is left
        jobrec = srv.service.jobs.get(c.submit(live["tid"], assets["audios"][3])["job_id"])
        c.close()
    finally:
        srv.stop()
    assert jobrec.status in ("succeeded", "cancelled") and jobrec.done_event.is_set()
    assert srv.service.jobs.get(jobrec.id) is None
    assert os.listdir(os.path.join(data, "tmp")) == []
    _healthy(live)                                          # the first server never noticed


def test_template_delete(assets, live, tmp_path):
    c = live["client"]
    other = make_talking_head(tmp_path / "other.mp4", "Hi.", size=128, seed=3, head_motion=0.0,
                              preset="veryfast")["video"]
    tid = c.upload_template(other)["template_id"]
    assert tid != live["tid"] and tid in [t["template_id"] for t in c.list_templates()]
    c.delete_template(tid)
    with pytest.raises(ApiClientError) as e:
        c.delete_template(tid)
    assert e.value.status == 404
    assert [t["template_id"] for t in c.list_templates()] == [live["tid"]]
