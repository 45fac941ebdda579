"""Audio I/O and the four audio front-ends, on real files the tests write.

Encoded formats are made with the ffmpeg binary shipped by imageio-ffmpeg; DeepSpeech weights are written in
the official formats (a TF GraphDef with v0.1 node names, a Lightning checkpoint with deepspeech.pytorch keys
and pickled omegaconf/enum-like hyper-parameters, a transformers save_pretrained folder) with tiny sizes, and
the outputs are checked against independent numpy / torch-functional implementations written here.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io.wavfile

from ds2_reference import ds2_reference, speech_like, tiny_ds2_state, write_ds2_checkpoint
from utils.audio.base import make_windows
from utils.audio.features import extract_features, get_frontend
from utils.audio.mel import MelFrontEnd, mel_to_hz
from utils.media.audio_io import load_audio, save_wav
from utils.media.timebase import num_video_frames
from utils.errors import UserError

SR = 16000


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(*args):
    subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _sine(freq, sr, dur, amp=0.5):
    t = np.arange(int(round(dur * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _dominant_freq(x, sr=SR):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


# ------------------------------------------------------------------------------------------ audio_io


def test_num_video_frames_rule():
    assert num_video_frames(0, SR) == 0
    assert num_video_frames(1, SR) == 1  # non-empty audio covers at least one frame
    assert num_video_frames(640, SR) == 1
    assert num_video_frames(959, SR) == 1
    assert num_video_frames(960, SR) == 2  # 1.5 frames rounds half up
    assert num_video_frames(16000, SR) == 25
    assert num_video_frames(24000, 24000) == 25
    assert num_video_frames(44100 * 3, 44100, fps=30) == 90


@pytest.mark.parametrize("sr", [8000, 16000, 24000, 44100, 48000])
def test_load_wav_int16_resamples_correctly(tmp_path, sr):
    x = _sine(440, sr, 1.3)
    path = tmp_path / f"s{sr}.wav"
    scipy.io.wavfile.write(path, sr, np.round(x * 32767).astype(np.int16))
    y = load_audio(str(path))
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 1.3 * SR) <= 1
    assert abs(_dominant_freq(y) - 440) < 2
    assert abs(np.max(np.abs(y[1000:-1000])) - 0.5) < 0.01  # level kept (int16 scaled to [-1, 1])


def test_load_wav_float32_int32_and_stereo_average(tmp_path):
    x = _sine(1000, 44100, 1.0, amp=0.8)
    scipy.io.wavfile.write(tmp_path / "f.wav", 44100, x.astype(np.float32))
    scipy.io.wavfile.write(tmp_path / "i.wav", 48000, np.round(_sine(1000, 48000, 1.0, 0.8) * 2**31 * 0.999).astype(np.int32))
    for name in ("f.wav", "i.wav"):
        y = load_audio(str(tmp_path / name))
        assert len(y) == SR
        assert abs(np.max(np.abs(y[500:-500])) - 0.8) < 0.01  # float wavs are NOT silenced (the original's were)
        assert abs(_dominant_freq(y) - 1000) < 2
    # Stereo: channels averaged, not summed nor taken from channel 0.
    left, right = _sine(300, SR, 1.0, 0.6), _sine(300, SR, 1.0, 0.2)
    scipy.io.wavfile.write(tmp_path / "st.wav", SR, np.round(np.stack([left, right], 1) * 32767).astype(np.int16))
    y = load_audio(str(tmp_path / "st.wav"))
    assert abs(np.max(np.abs(y)) - 0.4) < 0.003


@pytest.mark.parametrize("ext,codec", [("flac", ["-c:a", "flac"]), ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
                                       ("m4a", ["-c:a", "aac", "-b:a", "128k"]), ("ogg", ["-c:a", "libvorbis"])])
def test_load_compressed_formats(tmp_path, ext, codec):
    src = tmp_path / "src.wav"
    scipy.io.wavfile.write(src, 44100, np.round(np.stack([_sine(440, 44100, 2.0)] * 2, 1) * 32767).astype(np.int16))
    out = tmp_path / f"a.{ext}"
    _run_ffmpeg("-i", str(src), *codec, str(out))
    y = load_audio(str(out))
    assert abs(len(y) / SR - 2.0) < 0.05  # encoder delay / padding is trimmed by the decoder
    assert abs(_dominant_freq(y) - 440) < 2
    assert num_video_frames(len(y), SR) in (49, 50, 51)


def test_aac_frame_padding_is_trimmed_to_the_stated_duration(tmp_path):
    # 1.013 s is not a whole number of 1024-sample AAC frames: the decoder returns 16384 samples, the stream
    # says 16208; the lengths must agree to the sample, like the wav the encoder was given
    src, out = tmp_path / "src.wav", tmp_path / "a.m4a"
    n = 16208
    scipy.io.wavfile.write(src, SR, np.round(_sine(440, SR, n / SR) * 32767).astype(np.int16))
    _run_ffmpeg("-i", str(src), "-c:a", "aac", str(out))
    assert len(load_audio(str(src))) == n
    y = load_audio(str(out))
    assert len(y) == n
    assert np.sqrt(np.mean(y[-400:] ** 2)) > 0.25             # the tail is the tone, not padding
    assert num_video_frames(len(y), SR) == 25


def test_load_audio_track_of_mp4_and_24khz_same_frames(tmp_path):
    # A video with an AAC track: the audio track is what load_audio returns.
    mp4 = tmp_path / "v.mp4"
    _run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=1.2", "-f", "lavfi",
                "-i", "sine=frequency=500:sample_rate=48000:duration=1.2", "-c:v", "mpeg4", "-c:a", "aac",
                "-shortest", str(mp4))
    y = load_audio(str(mp4))
    assert abs(len(y) / SR - 1.2) < 0.06 and abs(_dominant_freq(y) - 500) < 3
    # ChatTTS case (docs/original.md): a 24 kHz file must give the same frame count as the 16 kHz one, file untouched.
    dur = 2.52
    p24, p16 = tmp_path / "tts24.wav", tmp_path / "tts16.wav"
    scipy.io.wavfile.write(p24, 24000, np.round(_sine(220, 24000, dur) * 32767).astype(np.int16))
    scipy.io.wavfile.write(p16, 16000, np.round(_sine(220, 16000, dur) * 32767).astype(np.int16))
    digest = hashlib.sha256(p24.read_bytes()).hexdigest()
    a24, a16 = load_audio(str(p24)), load_audio(str(p16))
    assert len(a24) == len(a16) == int(dur * SR)
    assert num_video_frames(len(a24), SR) == num_video_frames(len(a16), SR) == 63
    assert get_frontend("mel")(a24).shape == (63, 80)
    assert hashlib.sha256(p24.read_bytes()).hexdigest() == digest  # never rewritten in place (the original's was)
    assert np.max(np.abs(a24[100:-100] - a16[100:-100])) < 0.01  # same waveform after resampling


def test_load_audio_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_audio(str(tmp_path / "missing.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="junk.wav"):
        load_audio(str(junk))
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all\n" * 50)
    with pytest.raises(UserError, match="notes.mp3"):
        load_audio(str(text))
    video_only = tmp_path / "silent_video.mp4"
    _run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=0.4", "-c:v", "mpeg4", str(video_only))
    with pytest.raises(UserError, match="no audio stream"):
        load_audio(str(video_only))
    empty = tmp_path / "empty.wav"
    scipy.io.wavfile.write(empty, SR, np.zeros(0, np.int16))
    with pytest.raises(UserError, match="empty.wav"):
        load_audio(str(empty))
    with pytest.raises(UserError, match="not a file"):
        load_audio(str(tmp_path))


def test_save_wav_roundtrip_atomic(tmp_path):
    x = _sine(440, SR, 0.5, 0.7).astype(np.float32)
    path = tmp_path / "sub" / "out.wav"
    save_wav(str(path), x)
    rate, data = scipy.io.wavfile.read(path)
    assert rate == SR and data.dtype == np.int16 and data.ndim == 1
    np.testing.assert_allclose(load_audio(str(path)), x, atol=2.0 / 32767)
    assert os.listdir(path.parent) == ["out.wav"]  # no temp file left behind
    save_wav(str(path), np.zeros(10, np.float32))  # overwrite goes through os.replace
    assert len(load_audio(str(path))) == 10


# ------------------------------------------------------------------------------------------ mel + API


def test_make_windows_edge_padding():
    f = np.arange(12, dtype=np.float32).reshape(4, 3)  # row r = [3r, 3r+1, 3r+2]
    w = make_windows(f, 5)
    assert w.shape == (4, 3, 5)
    np.testing.assert_array_equal(w[0, 0], [0, 0, 0, 3, 6])  # rows -2,-1 clamp to row 0
    np.testing.assert_array_equal(w[3, 2], [5, 8, 11, 11, 11])  # rows 1,2,3 then 4,5 clamp to row 3
    np.testing.assert_array_equal(w[1, 1], [1, 1, 4, 7, 10])
    assert make_windows(f, 1).shape == (4, 3, 1)
    assert make_windows(np.zeros((0, 3)), 5).shape == (0, 3, 5)
    with pytest.raises(ValueError):
        make_windows(f, 4)


def test_mel_layout_silence_and_fixed_normalisation():
    fe = get_frontend("mel")
    assert fe.name == "mel" and fe.dim == 80
    silence = fe(np.zeros(SR))
    assert silence.shape == (25, 80) and np.all(silence == -1.0)
    speech = speech_like(1.0)
    loud = fe(speech)
    assert loud.mean() > -0.3 and np.abs(loud - silence).mean() > 0.5
    # Fixed normalisation: 20 dB quieter -> every voiced value drops by 20/50 = 0.4, silence stays -1.
    quiet = fe(speech * 0.1)
    voiced = loud > -0.5
    np.testing.assert_allclose((loud - quiet)[voiced], 0.4, atol=0.02)
    mixed = fe(np.concatenate([speech, np.zeros(SR)]))
    assert np.all(mixed[27:] == -1.0)  # silence after speech is still silence (no per-file statistics)
    # A 2 kHz tone peaks in the band whose centre is nearest 2 kHz, in both 20 ms sub-steps.
    tone = fe(_sine(2000, SR, 0.4, 0.5))
    centres = mel_to_hz(np.linspace(*[2595 * np.log10(1 + f / 700) for f in (MelFrontEnd.fmin, MelFrontEnd.fmax)], 42))[1:-1]
    band = int(np.argmin(np.abs(centres - 2000)))
    assert tone[5, :40].argmax() == band and tone[5, 40:].argmax() == band
    # The sub-steps are time-ordered: a click in the second half of frame 3 only lights the second sub-step.
    click = np.zeros(SR // 2)
    click[3 * 640 + 480] = 1.0
    f = fe(click)
    assert f[3, 40:].max() > -0.9 and np.all(f[3, :40] == -1.0)


def test_get_frontend_errors(tmp_path):
    with pytest.raises(UserError, match="unknown audio feature"):
        get_frontend("wav2lip")
    for name in ("deepspeech", "deepspeech2", "hubert"):
        with pytest.raises(UserError, match="--audio_model_path"):
            get_frontend(name)
        with pytest.raises(UserError, match="--audio_model_path"):
            get_frontend(name, str(tmp_path / "nope"))
    with pytest.raises(UserError, match="folder"):
        get_frontend("hubert", __file__)
    with pytest.raises(UserError, match="file"):
        get_frontend("deepspeech", str(tmp_path))
    bogus = tmp_path / "output_graph.pb"
    bogus.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError, match="output_graph.pb"):
        get_frontend("deepspeech", str(bogus))
    with pytest.raises(UserError, match="output_graph.pb"):
        get_frontend("deepspeech2", str(bogus))


def _check_lengths(fe, dim, silence_padding=True):
    """len(features) == num_frames for audio shorter than, equal to and longer than the video (with
    ``silence_padding``: missing audio gives the features of explicit silence; DeepSpeech2 instead normalises
    over the real samples, as the original)."""
    speech = speech_like(1.0)
    for n_samples in (5 * 640 + 100, 7 * 640, 9 * 640 + 300):
        out = fe(speech[:n_samples], 7)
        assert out.shape == (7, dim) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert fe(speech[:7 * 640 + 10]).shape == (7, dim)  # None -> num_video_frames
    assert fe(speech[:0], 3).shape == (3, dim)
    assert fe(speech[:0]).shape == (0, dim)
    # Surplus audio is ignored far from the end; missing audio is silence.
    longer, exact = fe(speech, 7), fe(speech[:7 * 640], 7)
    assert np.all(np.isfinite(longer)) and np.all(np.isfinite(exact))
    if silence_padding:
        short = fe(speech[:5 * 640], 7)
        padded = fe(np.concatenate([speech[:5 * 640], np.zeros(2 * 640)]), 7)
        np.testing.assert_allclose(short, padded, rtol=1e-5, atol=1e-5)


def test_mel_lengths_and_extract_features(tmp_path):
    _check_lengths(get_frontend("mel"), 80)
    path = tmp_path / "speech.wav"
    save_wav(str(path), speech_like(1.0))
    feats = extract_features(str(path))
    assert feats.shape == (25, 80)
    assert extract_features(str(path), num_frames=30).shape == (30, 80)


# ------------------------------------------------------------------------------------------ deepspeech v0.1


def _tf_const(graph, name, value):
    from tensorboard.compat.proto import types_pb2
    from tensorboard.util import tensor_util

    node = graph.node.add()
    node.name, node.op = name, "Const"
    node.attr["dtype"].type = types_pb2.DT_FLOAT
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.asarray(value, np.float32)))
    read = graph.node.add()  # frozen graphs keep the variable's read op as an Identity
    read.name, read.op = name + "/read", "Identity"
    read.input.append(name)
    read.attr["T"].type = types_pb2.DT_FLOAT


def _tiny_ds1_weights(seed=0, h=12, cell=6):
    rng = np.random.default_rng(seed)

    def mat(i, o, scale=1.0):
        return rng.standard_normal((i, o)) * scale / np.sqrt(i)

    w = {"h1": mat(494, h, 2), "b1": rng.standard_normal(h) * 0.3, "h2": mat(h, h, 2), "b2": rng.standard_normal(h) * 0.3,
         "h3": mat(h, h, 2), "b3": rng.standard_normal(h) * 0.3, "h5": mat(2 * cell, h, 2),
         "b5": rng.standard_normal(h) * 0.3, "h6": mat(h, 29, 2), "b6": rng.standard_normal(29) * 0.3}
    for d in ("fw", "bw"):
        w[d + "_kernel"] = mat(h + cell, 4 * cell, 1.5)
        w[d + "_bias"] = rng.standard_normal(4 * cell) * 0.3
    return w


def _write_ds1_graph(path, w, prefix="", lstm_names=("basic_lstm_cell", "kernel", "bias"), drop=()):
    from tensorboard.compat.proto import graph_pb2, types_pb2

    g = graph_pb2.GraphDef()
    for name, dt in (("input_node", types_pb2.DT_FLOAT), ("input_lengths", types_pb2.DT_INT32)):
        n = g.node.add()
        n.name, n.op = prefix + name, "Placeholder"
        n.attr["dtype"].type = dt
    cell, kname, bname = lstm_names
    for key, value in w.items():
        if key in drop:
            continue
        if "_" in key:
            d, kind = key.split("_")
            name = f"bidirectional_rnn/{d}/{cell}/{kname if kind == 'kernel' else bname}"
        else:
            name = key
        _tf_const(g, prefix + name, value)
    out = g.node.add()
    out.name, out.op = prefix + "logits", "Reshape"
    out.input.extend([prefix + "add_5", prefix + "Reshape_1/shape"])
    with open(path, "wb") as f:
        f.write(g.SerializeToString())


def _ds1_reference(samples, w):
    """Plain numpy DeepSpeech v0.1 inference: MFCC -> context windows -> dense x3 -> TF BiLSTM -> dense -> logits."""
    from python_speech_features import mfcc

    feats = mfcc(samples * 32768.0, samplerate=SR, numcep=26)[::2]
    t = len(feats)
    padded = np.vstack([np.zeros((9, 26)), feats, np.zeros((9, 26))])
    x = np.stack([padded[i:i + 19].reshape(-1) for i in range(t)])
    x = (x - x.mean()) / x.std()
    for i in "123":
        x = np.minimum(np.maximum(x @ w["h" + i] + w["b" + i], 0), 20)

    def lstm(seq, kernel, bias):
        n = bias.shape[0] // 4
        h, c, out = np.zeros(n), np.zeros(n), []
        sig = lambda v: 1 / (1 + np.exp(-v))
        for v in seq:
            z = np.concatenate([v, h]) @ kernel + bias
            i, j, f, o = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            c = c * sig(f + 1.0) + sig(i) * np.tanh(j)
            h = np.tanh(c) * sig(o)
            out.append(h)
        return np.array(out)

    fw = lstm(x, w["fw_kernel"], w["fw_bias"])
    bw = lstm(x[::-1], w["bw_kernel"], w["bw_bias"])[::-1]
    y = np.minimum(np.maximum(np.hstack([fw, bw]) @ w["h5"] + w["b5"], 0), 20)
    return (y @ w["h6"] + w["b6"])[::2]


def test_deepspeech_graph_matches_numpy_reference(tmp_path):
    w = _tiny_ds1_weights()
    path = tmp_path / "output_graph.pb"
    _write_ds1_graph(path, w)
    fe = get_frontend("deepspeech", str(path))
    assert fe.name == "deepspeech" and fe.dim == 29
    speech = speech_like(0.8)[: 20 * 640]
    out = fe(speech, 20)
    ref = _ds1_reference(speech, w)
    assert ref.shape == (20, 29)  # F*40 ms -> exactly F rows
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert np.std(out) > 0.1  # not a degenerate all-clipped network
    _check_lengths(fe, 29)
    # Same weights under a scope prefix with TF 1.0 LSTM names load to the same numbers.
    scoped = tmp_path / "scoped.pb"
    _write_ds1_graph(scoped, w, prefix="deepspeech/", lstm_names=("basic_lstm_cell", "weights", "biases"))
    np.testing.assert_allclose(get_frontend("deepspeech", str(scoped))(speech, 20), out, rtol=1e-5, atol=1e-5)
    # Digital silence does not produce NaN (global std guard).
    assert np.all(np.isfinite(fe(np.zeros(SR))))


def test_deepspeech_graph_missing_nodes(tmp_path):
    w = _tiny_ds1_weights()
    path = tmp_path / "output_graph.pb"
    _write_ds1_graph(path, w, drop=("h5",))
    with pytest.raises(UserError, match="missing weight nodes h5"):
        get_frontend("deepspeech", str(path))
    w["h6"] = w["h6"][:5]
    _write_ds1_graph(path, w)
    with pytest.raises(UserError, match="do not fit"):
        get_frontend("deepspeech", str(path))


# ------------------------------------------------------------------------------------------ deepspeech2


def test_deepspeech2_checkpoint_matches_reference(tmp_path):
    sd = tiny_ds2_state()
    path = tmp_path / "LibriSpeech_Pretrained_v3.ckpt"
    write_ds2_checkpoint(path, sd)
    assert "omegaconf.dictconfig" not in sys.modules
    fe = get_frontend("deepspeech2", str(path))
    assert fe.name == "deepspeech2" and fe.dim == 29
    assert fe.spect_cfg["window"] == "hamming" and fe.spect_cfg["window_size"] == 0.02
    assert fe.labels[0] == "_" and fe.labels[-1] == " "
    speech = speech_like(0.8)[: 20 * 640]
    out = fe(speech, 20)
    ref = ds2_reference(speech, sd)
    assert ref.shape == (21, 29)  # F*40 ms -> F+1 rows in the original; we keep exactly F
    np.testing.assert_allclose(out, ref[:20], rtol=1e-3, atol=1e-3)
    assert np.std(out) > 0.05
    _check_lengths(fe, 29, silence_padding=False)
    silent = fe(np.zeros(SR))  # the original failed on silent clips
    assert silent.shape == (25, 29) and np.all(np.isfinite(silent))


def test_deepspeech2_rejects_foreign_checkpoint(tmp_path):
    import torch

    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(UserError, match="missing rnns.0.rnn.weight_hh_l0"):
        get_frontend("deepspeech2", str(path))
    torch.save([1, 2, 3], path)
    with pytest.raises(UserError, match="state_dict"):
        get_frontend("deepspeech2", str(path))


# ------------------------------------------------------------------------------------------ hubert


def test_hubert_folder(tmp_path):
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    model = HubertModel(cfg).eval()
    folder = tmp_path / "hubert_tiny"
    model.save_pretrained(folder)
    fe = get_frontend("hubert", str(folder))
    assert fe.name == "hubert" and fe.dim == 16
    speech = speech_like(0.6).astype(np.float32)[: 12 * 640]
    out = fe(speech, 12)
    # Reference: 40 samples of padding each side -> 24 encoder frames, averaged in pairs.
    with torch.no_grad():
        hidden = model(torch.from_numpy(np.pad(speech, (40, 40)))[None]).last_hidden_state[0].numpy()
    assert hidden.shape[0] == 24
    np.testing.assert_allclose(out, hidden.reshape(12, 2, 16).mean(1), rtol=1e-4, atol=1e-4)
    _check_lengths(fe, 16)
    # Long audio goes through overlapping chunks and still gives one row per frame.
    fe.chunk_frames, fe.chunk_context = 10, 3
    chunked = fe(speech_like(1.0), 25)
    assert chunked.shape == (25, 16) and np.all(np.isfinite(chunked))
    os.remove(folder / "model.safetensors")
    with pytest.raises(UserError, match="no model weights"):
        get_frontend("hubert", str(folder))
