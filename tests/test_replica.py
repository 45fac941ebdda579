"""The model replica of the cluster service (server/replica.py) in object-storage mode, without Ray: two replicas
with their own node-local data_dir share templates and results only through an fsspec store (memory://)."""
import hashlib
import os

import pytest

pytest.importorskip("fsspec")

from server.object_store import ObjectStore  # noqa: E402
from server.replica import ReplicaWorker  # noqa: E402
from utils.media.audio_io import load_audio, save_wav  # noqa: E402
from utils.media.timebase import num_video_frames  # noqa: E402
from utils.media.video_io import probe  # noqa: E402
from models.tiny import write_tiny_checkpoint  # noqa: E402
from utils.synthetic.speech import synthesize_speech  # noqa: E402
from utils.synthetic.talking_head import make_talking_head  # noqa: E402


@pytest.mark.slow
def test_two_nodes_share_templates_and_results_through_object_storage(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pth")
    video = make_talking_head(tmp_path / "face.mp4", "Hello there.", size=128, head_motion=0.3,
                              preset="veryfast")["video"]
    speech, sr, _ = synthesize_speech("Two birds.")
    save_wav(tmp_path / "s.wav", speech, sr)
    url = f"memory://lawdnet-replica-test-{os.getpid()}"
    base = {"checkpoint": ckpt, "device": "cpu", "store_url": url, "cpus_per_replica": 1, "batch_size": 8}
    a = ReplicaWorker({**base, "data_dir": str(tmp_path / "node_a")}, 0)
    b = ReplicaWorker({**base, "data_dir": str(tmp_path / "node_b")}, 1)
    try:
        data = open(video, "rb").read()
        out = a.add_template(data, hashlib.sha256(data).hexdigest(), len(data))
        assert out["status"] == "ok" and out["created"]
        tid = out["meta"]["template_id"]
        store = ObjectStore(url)
        assert store.list_template_ids() == [tid]
        assert b.storage.list_template_ids() == []             # node B has never seen it
        bad = b.render("0" * 24, "f" * 24, open(tmp_path / "s.wav", "rb").read())
        assert bad["status"] == "failed" and bad["http_status"] == 404 and bad["error"] == "template_not_found"
        res = b.render("1" * 24, tid, open(tmp_path / "s.wav", "rb").read())
        assert res["status"] == "succeeded", res
        assert b.storage.list_template_ids() == [tid]          # fetched from the store, landmarks included
        assert res["stats"]["template_cached"]                 # no second face analysis on node B
        store.fetch_output("1" * 24, str(tmp_path / "fetched.mp4"))   # what the gateway does for a client
        assert probe(tmp_path / "fetched.mp4").num_frames == num_video_frames(len(load_audio(
            str(tmp_path / "s.wav"), 16000)), 16000)
        assert store.local_output("1" * 24) == ""
        b.drop_template(tid)                                    # deleted through the gateway
        assert b.storage.list_template_ids() == []
        assert os.listdir(b.storage.tmp) == [] and os.listdir(a.storage.tmp) == []
    finally:
        a.close(1.0)
        b.close(1.0)
