import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_ssd.decoding.narrow_linear import MAX_ROWS, linear_modules, narrow_linear


@pytest.fixture
def f_linear_calls(monkeypatch):
    """Counts calls of F.linear: nn.Linear's own forward and the narrow path's fallback use it, W @ x^T does not."""
    calls = []
    linear = F.linear

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return linear(*args, **kwargs)

    monkeypatch.setattr(F, "linear", counted)
    return calls


@pytest.mark.parametrize(("rows", "narrow"), [(1, False), (2, True), (5, True), (MAX_ROWS, True),
                                              (MAX_ROWS + 1, False)])
def test_few_rows_take_the_narrow_path_inside_the_block_only(f_linear_calls, rows, narrow):
    torch.manual_seed(0)
    layer = nn.Linear(64, 96)
    x = torch.randn(1, rows, 64)
    expected = layer(x)
    assert len(f_linear_calls) == 1
    with narrow_linear([layer]):
        assert "forward" in vars(layer)  # the instance's forward is patched
        got = layer(x)
    assert len(f_linear_calls) == (1 if narrow else 2)  # 1 and > MAX_ROWS rows fall back to F.linear
    torch.testing.assert_close(got, expected)
    assert "forward" not in vars(layer)  # the patch is gone after the block
    layer(x)
    assert len(f_linear_calls) == (2 if narrow else 3)  # and the plain forward is back


def test_disabled_block_leaves_the_layers_alone(f_linear_calls):
    layer = nn.Linear(64, 96)
    with narrow_linear([layer], enabled=False):
        assert "forward" not in vars(layer)
        layer(torch.randn(1, 5, 64))
    assert len(f_linear_calls) == 1


def test_the_patch_is_removed_when_the_block_raises():
    layer = nn.Linear(64, 96)
    with pytest.raises(RuntimeError, match="inside"), narrow_linear([layer]):
        raise RuntimeError("inside")
    assert "forward" not in vars(layer)


def test_only_large_linear_layers_take_the_narrow_path():
    small, large = nn.Linear(128, 384), nn.Linear(1024, 1024)
    block = nn.Sequential(small, nn.ReLU(), large)
    assert linear_modules([block]) == [large]
    assert linear_modules([block], min_weights=0) == [small, large]
