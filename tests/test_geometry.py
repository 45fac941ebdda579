"""The crop geometry's one rule for the mouth size: what passes check_mouth_region_size, a generator can take."""
import pytest
import torch

from conftest import tiny_generator
from utils.errors import UserError
from utils.face.geometry import check_mouth_region_size, crop_size


def _round_trip(m: int) -> tuple:
    H, W = crop_size(m)
    g = tiny_generator()
    with torch.no_grad():
        out = g(torch.rand(1, 3, H, W), torch.rand(1, 15, H, W), torch.rand(1, 80, 5))
    return tuple(out.shape[2:]), (H, W)


@pytest.mark.parametrize("m", [32, 64, 96])
def test_sizes_that_pass_give_a_crop_the_generator_returns_whole(m):
    assert check_mouth_region_size(m) == m
    got, want = _round_trip(m)
    assert got == want


@pytest.mark.parametrize("m", [48, 80])
def test_sizes_that_fail_are_those_the_generator_cannot_take(m):
    with pytest.raises(UserError, match=f"multiple of 32 \\(m = {m} gives a"):
        check_mouth_region_size(m)
    got, want = _round_trip(m)               # what the rule prevents: a crop of another size comes back
    assert got != want


@pytest.mark.parametrize("m", [0, -32, 8, 300])
def test_other_bad_sizes(m):
    with pytest.raises(UserError, match="multiple of 32"):
        check_mouth_region_size(m)
