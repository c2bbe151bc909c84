"""The imitation network's decoding state: stepwise outputs equal the causal forward over the whole sequence."""

import torch

from lightning_ssd.models.components.imitation import ImitationNetwork


def _net():
    torch.manual_seed(0)
    net = ImitationNetwork(32, attention=True, residual=False).eval()
    return net


def test_stepwise_decoding_equals_the_sequence_forward():
    net = _net()
    x = torch.randn(1, 12, 32)
    full = net(x)
    state = net.new_state()
    parts = [net(x[:, :5], state)]  # a prompt, then single tokens, then a block of three
    parts += [net(x[:, t : t + 1], state) for t in range(5, 9)]
    parts.append(net(x[:, 9:12], state))
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
    assert state.length == 12


def test_crop_rewinds_the_state():
    net = _net()
    x, other = torch.randn(1, 10, 32), torch.randn(1, 3, 32)
    state = net.new_state()
    net(x[:, :7], state)
    net(other, state)  # rejected drafts
    state.crop(7)
    assert state.length == 7
    torch.testing.assert_close(net(x[:, 7:], state), net(x)[:, 7:], rtol=1e-5, atol=1e-5)


def test_without_attention_there_is_no_state():
    assert ImitationNetwork(32).new_state() is None
