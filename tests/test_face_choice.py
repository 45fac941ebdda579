"""Which face gets dubbed in a template with two people (issue 21): a template made with ffmpeg hstack from two
synthetic speakers (the left one smaller), dubbed by the CLI function, the landmark cache, the server's
template upload (``face`` field) and a live session; the other person's pixels stay exactly the template's."""
import json
import subprocess

import numpy as np
import pytest

from inference_function import generate_video_with_audio
from utils.errors import UserError
from utils.face.landmarks import FaceChoice, parse_face
from utils.media.audio_io import save_wav
from models.tiny import write_tiny_checkpoint
from utils.synthetic.speech import synthesize_speech
from utils.synthetic.talking_head import make_talking_head

W = 160          # each speaker's half of the 320 x 160 template


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    a = make_talking_head(root / "a.mp4", "Hello there, friend.", seed=0, size=128, head_motion=0.3,
                          preset="veryfast")["video"]
    b = make_talking_head(root / "b.mp4", "Good morning to you.", seed=1, size=W, head_motion=0.3,
                          preset="veryfast")["video"]
    video = root / "two.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", a, "-i", b, "-filter_complex",
                    f"[0:v]pad={W}:{W}:16:16[a];[a][1:v]hstack=inputs=2:shortest=1[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(video)],
                   check=True)
    x, sr, _ = synthesize_speech("Open the door.")
    speech = root / "speech.wav"
    save_wav(speech, x, sr)
    return {"root": root, "video": str(video), "speech": str(speech),
            "ckpt": write_tiny_checkpoint(root / "tiny.pth")}


def test_parse_face():
    assert parse_face(None) is None and parse_face(" ") is None
    assert parse_face("1") == FaceChoice(index=1) and str(parse_face("10.5,20")) == "10.5,20"
    for bad in ("-1", "a", "1,2,3", "nan,1", "-3,4"):
        with pytest.raises(UserError, match="face must be"):
            parse_face(bad)


def _dub(two, tmp_path, face, name):
    changed = np.zeros(2, np.int64)        # frames where the left / right half differs from the template

    def seen(k, i, frame, out, has_face):
        d = np.any(out != frame, axis=2)
        changed[0] += bool(d[:, :W].any())
        changed[1] += bool(d[:, W:].any())

    from config.config import InferenceConfig

    stats = generate_video_with_audio(two["video"], two["speech"], two["ckpt"], tmp_path / f"{name}.mp4",
                                      InferenceConfig(device="cpu", cache_dir=str(two["root"] / "cache")),
                                      progress=False, frame_callback=seen, face=face)
    return stats, changed


def test_face_choice_dubs_only_the_chosen_person(two, tmp_path, capsys):
    stats, changed = _dub(two, tmp_path, None, "default")          # no choice: the largest (right) + a warning
    assert changed[0] == 0 and changed[1] == stats["frames"], changed
    assert any("2 faces" in w for w in stats["warnings"])
    assert "warning: the template shows 2 faces; the largest is dubbed" in capsys.readouterr().err
    for face in ("0", "80,80"):                                       # index 0 = leftmost; a point on that face
        stats, changed = _dub(two, tmp_path, face, "left" + face)
        assert changed[1] == 0 and changed[0] == stats["frames"], (face, changed)
        assert not any("faces" in w for w in stats["warnings"])
    stats, changed = _dub(two, tmp_path, "240,80", "right")            # a point on the right person
    assert changed[0] == 0 and changed[1] == stats["frames"]
    assert not stats["template_cached"]          # the cache keys on the choice: "240,80" was analysed anew
    stats, _ = _dub(two, tmp_path, "0", "left-again")
    assert stats["template_cached"]
    with pytest.raises(UserError, match="face index 2"):
        _dub(two, tmp_path, "2", "none")


def test_server_face_field_faces_route_and_live_session(two):
    import httpx
    from websockets.sync.client import connect

    from client_LawDNet import LawDNetClient
    from conftest import LiveServer

    srv = LiveServer(checkpoint=two["ckpt"], device="cpu", data_dir=str(two["root"] / "srv"), max_sessions=1)
    try:
        c = LawDNetClient(srv.url, retries=0)
        plain = c.upload_template(two["video"])
        assert plain["face"] == "" and any("2 faces" in w for w in plain["warnings"])
        left = c.upload_template(two["video"], face="0")
        assert left["face"] == "0" and left["template_id"] != plain["template_id"]
        assert not any("faces" in w for w in left["warnings"])
        faces = httpx.get(f"{srv.url}/v1/templates/{plain['template_id']}/faces").json()
        assert len(faces["faces"]) == 2 and faces["dubbed"][0] > W          # the largest: the right one
        faces = httpx.get(f"{srv.url}/v1/templates/{left['template_id']}/faces").json()
        assert faces["dubbed"][2] < W and faces["face"] == "0"
        r = httpx.get(f"{srv.url}/v1/templates/{plain['template_id']}/preview.jpg")
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        # a click in the page: the same video with the face at that point
        r = httpx.post(f"{srv.url}/v1/templates/{plain['template_id']}/face", json={"face": "80,80"})
        assert r.status_code == 201 and r.json()["face"] == "80,80"
        r = httpx.post(f"{srv.url}/v1/templates/{plain['template_id']}/face", json={"face": "x"})
        assert r.status_code == 400 and "face must be" in r.json()["detail"]
        with connect(f"{srv.url.replace('http', 'ws')}/v1/live/ws?template_id={left['template_id']}") as ws:
            ready = json.loads(ws.recv(timeout=60))
            assert ready["type"] == "ready" and ready["face"] == "0"
            assert ready["mouth_box"][2] <= W                                  # the live mouth is the left one
            ws.send(json.dumps({"type": "close"}))
    finally:
        srv.stop()


def test_face_choice_after_a_cut_takes_the_face_nearest_the_chosen_position(two, tmp_path):
    """Shot 1: small A left, large B right; shot 2 (a cut): the halves swapped. Chosen face 0 (A, on the left):
    after the cut the face nearest that position is dubbed (the left one); the right half is never touched."""
    swapped = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", two["video"], "-filter_complex",
                    f"[0:v]split[x][y];[x]crop={W}:{W}:0:0[l];[y]crop={W}:{W}:{W}:0[r];[r][l]hstack[s];"
                    f"[0:v][s]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "18", "-pix_fmt", "yuv420p", str(swapped)], check=True)
    sides = []

    def seen(k, i, frame, out, has_face):
        d = np.any(out != frame, axis=2)
        sides.append((i, bool(d[:, :W].any()), bool(d[:, W:].any())))

    from config.config import InferenceConfig

    x, sr, _ = synthesize_speech("Open the door. Good morning to you, said the quick brown fox to the dog.")
    speech = tmp_path / "long.wav"
    save_wav(speech, x, sr)
    generate_video_with_audio(str(swapped), str(speech), two["ckpt"], tmp_path / "o.mp4",
                              InferenceConfig(device="cpu", cache_dir=str(two["root"] / "cache")), progress=False,
                              frame_callback=seen, face="0")
    from utils.media.video_io import count_frames

    n1 = count_frames(two["video"], 25.0)
    assert max(i for i, _, _ in sides) >= n1 + 5                      # the dub reached into the second shot
    assert sides and all(left and not right for _, left, right in sides), sides
