import torch
from torch import nn

from lightning_ssd.decoding.narrow_linear import linear_modules, narrow_linear


def test_narrow_path_computes_the_same_product():
    torch.manual_seed(0)
    layer = nn.Linear(64, 96)
    for rows in (1, 2, 5, 40):  # 1 and > MAX_ROWS take the plain path
        x = torch.randn(1, rows, 64)
        expected = layer(x)
        with narrow_linear([layer]):
            got = layer(x)
        torch.testing.assert_close(got, expected)
    assert "forward" not in vars(layer)  # the patch is gone after the block


def test_only_large_linear_layers_take_the_narrow_path():
    small, large = nn.Linear(128, 384), nn.Linear(1024, 1024)
    block = nn.Sequential(small, nn.ReLU(), large)
    assert linear_modules([block]) == [large]
    assert linear_modules([block], min_weights=0) == [small, large]
