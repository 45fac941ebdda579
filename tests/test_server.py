"""The HTTP dubbing server under real conditions: uvicorn on a free loopback port (in a thread), a tiny real
LawDNet checkpoint, a synthetic talking-head template and espeak-ng speech; the client of client_LawDNet.py."""
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from client_LawDNet import ApiClientError, LawDNetClient
from conftest import LiveServer, make_dubber
from utils.media.audio_io import load_audio, save_wav
from utils.media.timebase import num_video_frames
from utils.synthetic.speech import synthesize_speech
from utils.synthetic.talking_head import make_talking_head
from utils.media.video_io import probe, read_frames

TEXTS = ["One.", "Two birds.", "Open the door.", "Good morning."]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_checkpoint, talking_head):
    root = tmp_path_factory.mktemp("server")
    ckpt = tiny_checkpoint()
    video = talking_head("face.mp4", "Hello there.", size=128, head_motion=0.3, preset="veryfast")["video"]
    audios = []
    for i, text in enumerate(TEXTS):
        speech, sr, _ = synthesize_speech(text)
        path = root / f"speech{i}.wav"
        save_wav(path, speech, sr)
        audios.append(str(path))
    return {"root": root, "ckpt": ckpt, "video": video, "audios": audios}


@pytest.fixture(scope="module")
def live(assets):
    srv = LiveServer(checkpoint=assets["ckpt"], device="cpu", data_dir=str(assets["root"] / "data"),
                     max_active_jobs=4, max_queue=4, max_audio_mb=0.5, max_audio_seconds=4.0, batch_size=8,
                     max_batch_frames=32, batch_wait_ms=20, max_template_seconds=10.0,
                     template_face_search_seconds=2.0)
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
    d = make_dubber(assets["ckpt"], device="cpu", cache_dir=live["srv"].service.storage.cache)
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
    r = post({"audio": ("a.png", wav, "image/png")}, {"template_id": tid})   # a type the field cannot use
    assert r.status_code == 415 and "'audio'" in r.json()["detail"]
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


# ------------------------------------------------------------------------------------------ hostile media

FF = shutil.which("ffmpeg")


def ff(*args, out=None):
    cmd = [FF, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    if out is None:
        subprocess.run(cmd, check=True)
    else:
        with open(out, "wb") as fh:          # to a pipe: the muxer cannot go back to write lengths or an index
            subprocess.run(cmd + ["pipe:1"], stdout=fh, check=True)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


class PeakRss:
    """Peak growth of this process's resident memory (the server runs in it) while the block runs."""

    def __enter__(self):
        self.base, self.peak, self._stop = _rss_mb(), 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb() - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb() - self.base)


@pytest.fixture(scope="module")
def hostile(assets, tmp_path_factory):
    if FF is None:
        pytest.skip("needs the ffmpeg command line tool")
    d = tmp_path_factory.mktemp("hostile")
    # 30 min of 48 kHz silence as FLAC (~250 KB): without any length in its header, and with a header claiming 1 s
    ff("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", 1800, "-c:a", "flac", "-f", "flac", out=d / "nolen.flac")
    data = bytearray((d / "nolen.flac").read_bytes())
    info = int.from_bytes(data[18:26], "big")                 # STREAMINFO: rate, channels, bits, total samples
    data[18:26] = ((info & ~((1 << 36) - 1)) | 48000).to_bytes(8, "big")
    (d / "lies.flac").write_bytes(bytes(data))
    grey = ["-f", "lavfi", "-i", "color=c=gray:size=64x64:rate={r}", "-t", "{t}", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p"]
    ff(*[a.format(r=25, t=8) for a in grey], "-f", "matroska", out=d / "grey_nolen.mkv")    # no face, no length
    ff(*[a.format(r=1, t=1800) for a in grey], d / "grey_30min.mp4")                          # no face, 30 min
    # the template looped to 8-10 s ("long", under the 10 s limit), a bit shorter ("mid") and to 11-13 s ("over")
    dur = probe(assets["video"]).duration
    loops = {"long": int(10 // dur) - 1, "mid": int(10 // dur) - 2, "over": int(np.ceil(11 / dur)) - 1}
    for name, n in loops.items():
        ff("-stream_loop", n, "-i", assets["video"], "-c", "copy", "-f", "matroska", out=d / f"{name}.mkv")
    # the "over" one whose header says 2 s (movie, track and media durations patched): only decoding can tell
    ff("-stream_loop", loops["over"], "-i", assets["video"], "-c", "copy", d / "lies.mp4")
    mp4 = bytearray((d / "lies.mp4").read_bytes())
    movie_scale = None
    for tag, at in ((b"mvhd", 12), (b"tkhd", None), (b"mdhd", 12)):
        pos = mp4.find(tag)
        while pos >= 0:
            assert mp4[pos + 4] == 0                          # version 0 boxes: 32-bit fields
            scale = int.from_bytes(mp4[pos + 4 + at:pos + 8 + at], "big") if at else movie_scale
            movie_scale = movie_scale or scale
            off = pos + 4 + (at + 4 if at else 20)
            mp4[off:off + 4] = (2 * scale).to_bytes(4, "big")
            pos = mp4.find(tag, pos + 4)
    (d / "lies.mp4").write_bytes(bytes(mp4))
    (d / "loop.ffconcat").write_text(f"ffconcat version 1.0\nfile '{d / 'loop.ffconcat'}'\n")
    return d


def test_hostile_audio_refused_with_bounded_memory(live, hostile):
    url, tid = live["srv"].url, live["tid"]
    for name in ("nolen.flac", "lies.flac"):
        with PeakRss() as mem:
            r = httpx.post(f"{url}/v1/dub", files={"audio": (name, (hostile / name).read_bytes(), "audio/flac")},
                           data={"template_id": tid}, timeout=120)
        assert r.status_code == 422 and r.json()["error"] == "audio_too_long", r.text
        # decoding stopped at the 4 s limit: 30 min decoded would take > 600 MB (48 kHz float)
        assert mem.peak < 100, f"{name}: the server grew by {mem.peak:.0f} MB"
    r = httpx.post(f"{url}/v1/dub", files={"audio": ("x.wav", (hostile / "loop.ffconcat").read_bytes(), "audio/wav")},
                   data={"template_id": tid}, timeout=60)
    assert r.status_code == 422 and "concat list" in r.json()["detail"]
    r = httpx.post(f"{url}/v1/dub", files={"audio": ("x.wav", b"", "audio/wav")}, data={"template_id": tid})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    assert os.listdir(live["tmp"]) == []
    _healthy(live)


def test_hostile_templates_refused_early(live, hostile):
    url = live["srv"].url

    def upload(name, body=None):
        data = (hostile / name).read_bytes() if body is None else body
        with PeakRss() as mem:
            r = httpx.post(f"{url}/v1/templates", files={"video": (name, data, "video/mp4")}, timeout=300)
        assert mem.peak < 150, f"{name}: the server grew by {mem.peak:.0f} MB"
        return r.status_code, r.json()

    st, body = upload("empty.mp4", b"")
    assert st == 422 and "empty" in body["detail"]
    st, body = upload("loop.ffconcat")
    assert st == 422 and "concat list" in body["detail"]
    st, body = upload("grey_30min.mp4")                                    # refused from its header
    assert st == 422 and body["error"] == "template_too_long" and "1800.0 s" in body["detail"]
    st, body = upload("grey_nolen.mkv")                                    # gives up after 2 s without a face
    assert st == 422 and "no face found in the first 2 s" in body["detail"]
    st, body = upload("over.mkv")                                          # no length in the header: demuxed
    assert st == 422 and body["error"] == "template_too_long" and "the limit is 10 s" in body["detail"]
    st, body = upload("lies.mp4")                                          # a lying header: stopped while decoding
    assert st == 422 and body["error"] == "template_too_long" and "more than 10 s" in body["detail"]
    assert "/" not in body["detail"]                                       # no server paths
    assert os.listdir(live["tmp"]) == []
    _healthy(live)


def test_template_analyses_run_side_by_side_and_abandoned_ones_stop(assets, live, hostile, tmp_path):
    svc, url, c = live["srv"].service, live["srv"].url, live["client"]
    before = set(t["template_id"] for t in c.list_templates())
    long_result = {}
    started, release = threading.Event(), threading.Event()

    def hold_the_first(path, cancel):            # the long analysis waits at its first frame until released
        if not started.is_set():
            started.set()
            release.wait(300)

    def upload_long():
        with open(hostile / "long.mkv", "rb") as f:
            r = httpx.post(f"{url}/v1/templates", files={"video": ("long.mkv", f, "video/x-matroska")}, timeout=300)
        long_result["status"] = r.status_code

    t = threading.Thread(target=upload_long)
    svc.templates.analysis_hook = hold_the_first
    try:
        t.start()
        assert started.wait(60) and t.is_alive(), "the long analysis did not start"
        short = make_talking_head(tmp_path / "short.mp4", "Hi.", size=128, seed=7, head_motion=0.0,
                                  preset="veryfast", lead_s=0.1, tail_s=0.1)["video"]
        tid = c.upload_template(short)["template_id"]
        assert t.is_alive(), "the short upload had to wait for the long analysis"
        release.set()
        t.join(300)
        assert long_result["status"] == 201
        c.delete_template(tid)
        # an upload whose client hangs up is cancelled: not stored, its folder removed
        counters = lambda: svc.metrics.snapshot()["counters"].get("template_analyses_cancelled_total", 0)  # noqa: E731
        cancelled = counters()
        data = (hostile / "mid.mkv").read_bytes()                          # another video
        svc.templates.analysis_hook = lambda path, cancel: cancel.wait(300)  # it lasts until its client hangs up
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{url}/v1/templates", files={"video": ("gone.mkv", data, "video/x-matroska")}, timeout=1.0)
        end = time.time() + 60
        while counters() == cancelled or os.listdir(live["tmp"]):
            assert time.time() < end, "the abandoned analysis was not cancelled"
            time.sleep(0.1)
    finally:
        svc.templates.analysis_hook = None
        release.set()
    assert svc.templates.pending == 0
    after = set(t["template_id"] for t in c.list_templates())
    assert len(after - before) == 1                                        # only the long one was stored
    c.delete_template((after - before).pop())
    _healthy(live)


def test_still_photo_template_upload(live, tmp_path):
    from PIL import Image

    head = make_talking_head(tmp_path / "p.mp4", "Hi.", size=128, seed=8, head_motion=0.0, preset="veryfast",
                             lead_s=0.1, tail_s=0.1)
    Image.fromarray(read_frames(head["video"], max_frames=1)[0]).save(tmp_path / "photo.jpg", quality=95)
    with open(tmp_path / "photo.jpg", "rb") as f:
        r = httpx.post(f"{live['srv'].url}/v1/templates", files={"video": ("photo.jpg", f, "image/jpeg")}, timeout=120)
    assert r.status_code == 201 and r.json()["frames"] == 1 and r.json()["still"] is True
    live["client"].delete_template(r.json()["template_id"])
