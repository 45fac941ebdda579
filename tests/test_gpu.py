"""CUDA paths (skipped without a GPU; benchmarks/gpu_check.sh runs them): the generator on the GPU against the
literal reference in strict fp32, the runner's bf16 / channels_last / CUDA-graph paths with cached reference
features against the CPU, and the compiled warp field against the eager one."""
import pytest
import torch

from inference.runner import ModelRunner
from models import LawDNet, use_compiled_warp
from models.local_affine_warp import LocalAffineWarp
from utils.face.geometry import crop_size

from lawdnet_reference import ref_lawdnet
from test_lawdnet import official_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEV = "cuda"


def _inputs(m, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = crop_size(m)
    return (torch.rand(batch, 3, H, W, generator=g), torch.rand(1, 15, H, W, generator=g),
            torch.randn(batch, 29, 5, generator=g) * 3)


@pytest.fixture(scope="module")
def model():
    return official_model(0)


def test_gpu_generator_matches_reference_in_strict_fp32(model):
    source, refs, audio = _inputs(128, 2, seed=1)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        g = LawDNet(model.config).eval().to(DEV)
        g.load_state_dict(model.state_dict())
        sd = {k: v.to(DEV) for k, v in model.state_dict().items()}
        s, r, a = source.to(DEV), refs.expand(2, -1, -1, -1).to(DEV), audio.to(DEV)
        with torch.no_grad():
            ours = g(s, r, a)
            cached = g(s, g.encode_references(r[:1]).expand(2, -1, -1, -1), a)
            ref = ref_lawdnet(sd, s, r, a)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (cached - ref).abs().max().item() <= 1e-5


def test_runner_gpu_paths_with_cached_features_match_cpu(model):
    source, refs, audio = _inputs(64, 4, seed=2)
    cpu = ModelRunner(model, "cpu")
    want = cpu(source, cpu.encode_references(refs).expand(4, -1, -1, -1), audio)
    g = LawDNet(model.config).eval().to(DEV)
    g.load_state_dict(model.state_dict())
    for kw, tol in ((dict(amp=False), 5e-3), (dict(amp=True), 5e-2), (dict(amp=True, cuda_graphs=True), 5e-2)):
        runner = ModelRunner(g, DEV, channels_last=True, **kw)
        feats = runner.encode_references(refs)
        assert feats.device.type == "cuda" and feats.dtype == torch.float32
        for _ in range(2):      # the second call replays the captured graph
            got = runner(source, feats.expand(4, -1, -1, -1), audio).cpu()
        direct = runner(source, refs.expand(4, -1, -1, -1), audio).cpu()
        assert (got - want).abs().mean().item() <= tol / 5, kw
        assert (got - want).abs().max().item() <= 10 * tol, kw
        assert (got - direct).abs().max().item() <= tol, kw


def test_compiled_warp_on_gpu_matches_eager():
    torch.manual_seed(3)
    for mode in ("official", "corrected"):
        layer = LocalAffineWarp(mode=mode).eval().to(DEV)
        feat = torch.randn(2, 256, 26, 20, device=DEV)
        code = torch.rand(2, 256, device=DEV) * 2
        with torch.no_grad():
            eager = layer(feat, code)
            use_compiled_warp(True)
            try:
                compiled = layer(feat, code)
            finally:
                use_compiled_warp(False)
        assert (eager - compiled).abs().max().item() <= 1e-4, mode
