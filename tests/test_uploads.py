"""server/uploads.py: the rule for a file part whose declared content type contradicts its field.

Rule (docs/inputs-frame-rule.md, README error table): a declared type must fit the field -- ``audio`` takes
audio/* or video/* (a video's sound track), ``video`` (the template) takes video/* or image/* (a still photo);
a generic type (application/octet-stream, none) leaves the decision to the bytes. A part declared as a kind the
field cannot use (image/png as the speech) is refused with 415 even when its bytes would decode, because the
client attached or labelled the wrong file. The requests are real multipart bodies (httpx over ASGI) parsed by the real
``read_multipart`` inside a real Starlette request; the media are made by the ffmpeg CLI."""
import asyncio
import shutil
import subprocess

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.errors import ApiError
from server.uploads import read_multipart

FF = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FF is None, reason="needs the ffmpeg command line tool")


@pytest.fixture(scope="module")
def post_to(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")

    async def upload(request):
        field = request.path_params["field"]
        try:
            form = await read_multipart(request, str(work), {field: 1 << 20})
        except ApiError as e:
            return JSONResponse(e.body(), status_code=e.status)
        up = form.files[field]
        return JSONResponse({"size": up.size, "content_type": up.content_type})

    app = Starlette(routes=[Route("/{field}", upload, methods=["POST"])])

    def post(field, data, ctype):
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
                return await c.post(f"/{field}", files={field: ("upload", data, ctype)})
        return asyncio.run(go())

    return post


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    subprocess.run([FF, "-v", "error", "-f", "lavfi", "-i", "sine=f=440:sample_rate=16000:duration=0.5",
                    d / "speech.wav"], check=True)
    subprocess.run([FF, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", d / "face.png"],
                   check=True)
    return {"wav": (d / "speech.wav").read_bytes(), "png": (d / "face.png").read_bytes()}


def test_declared_type_must_fit_the_field(post_to, media):
    wav, png = media["wav"], media["png"]
    post = post_to

    # the case: wav bytes declared image/png in the audio field of /v1/dub
    r = post("audio", wav, "image/png")
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert "'audio'" in r.json()["detail"] and "image/png" in r.json()["detail"]
    assert "audio/*, video/*" in r.json()["detail"]
    # an audio part as the template video
    assert post("video", wav, "audio/wav").status_code == 415
    # types that fit, and generic ones (the bytes decide later: a non-media body is a 422 from the decoder)
    for field, data, ctype in (("audio", wav, "audio/wav"), ("audio", wav, "video/mp4"),
                               ("audio", wav, "application/octet-stream"), ("audio", wav, "audio/x-wav; codecs=1"),
                               ("video", png, "image/png"), ("video", png, "video/mp4"),
                               ("video", png, "application/octet-stream"), ("audio", png, "application/octet-stream")):
        r = post(field, data, ctype)
        assert r.status_code == 200 and r.json()["size"] == len(data), (field, ctype, r.text)
    # not media at all stays a 415 whatever the field
    assert post("audio", wav, "text/plain").status_code == 415
    assert post("video", png, "text/html").status_code == 415
