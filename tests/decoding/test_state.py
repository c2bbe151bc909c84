"""The batch state's ragged cache: holes, row drops and compaction leave every row's logits as a fresh forward's."""

import pytest
import torch

from lightning_ssd.decoding.imitation import ImitationRunner
from lightning_ssd.decoding.state import BatchState
from lightning_ssd.models.components.imitation import ImitationNetwork
from tests.helpers import TINY, chaotic_, make_inputs, tiny_vlm


def _reference_logits(vlm, batch, row, tokens):
    """Logits of the last token of one row's prompt (unpadded) + tokens, by the model's own forward, no cache."""
    keep = batch["attention_mask"][row].bool()
    ids = torch.cat([batch["input_ids"][row, keep], torch.tensor(tokens)])[None]
    if vlm.decoder.is_encoder_decoder:
        prompt = vlm.encode(batch["pixel_values"][row : row + 1], batch["input_ids"][row : row + 1, keep])
        dec_ids = torch.tensor([[vlm.text_config.decoder_start_token_id, *tokens]])
        embeds = vlm.decoder.embed_tokens(dec_ids)
        pos = torch.arange(embeds.shape[1])[None]
        return vlm.decoder.full_forward(embeds, pos, None, None, prompt.encoder)[0, -1]
    embeds = vlm.merge_image(ids, batch["pixel_values"][row : row + 1])
    pos = torch.arange(embeds.shape[1])[None]
    return vlm.decoder.full_forward(embeds, pos)[0, -1]


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("compact", [False, True])
@torch.no_grad()
def test_rows_that_keep_different_numbers_of_slots(name, compact, monkeypatch):
    if compact:
        monkeypatch.setattr(BatchState, "compact_ratio", 0.0)  # compact whenever any slot is a hole
    vlm = chaotic_(tiny_vlm(name))
    dec, L = vlm.decoder, vlm.decoder.num_layers
    batch = make_inputs(name, [3, 7, 5])
    state = BatchState(dec, vlm.encode(**batch))
    state.prefill(0, L)
    g = torch.Generator().manual_seed(0)
    kept_tokens = [[], [], []]
    for kept in ([1, 3, 2], [4, 1, 2], [2, 2, 1]):
        appended = torch.randint(5, 90, (3, 4), generator=g)
        pos = state.position.unsqueeze(1) + torch.arange(4)
        state.run(dec.embed(dec.embed_tokens(appended), pos), 0, L)
        state.commit(torch.tensor(kept), L)
        for row, k in enumerate(kept):
            kept_tokens[row] += appended[row, :k].tolist()
    fullest = int(state.valid.sum(-1).max())
    if compact:
        assert state.slots == fullest  # real slots right-aligned: no hole left, only left padding
    else:
        assert state.slots > fullest  # every row kept fewer slots than some other row at some cycle
    last = torch.tensor([11, 12, 13])
    logits = dec.head(state.token_states(last, 0, L))[:, -1]
    for row in range(3):
        expected = _reference_logits(vlm, batch, row, kept_tokens[row] + [int(last[row])])
        torch.testing.assert_close(logits[row], expected, atol=2e-4, rtol=1e-4)
    # dropping a row leaves the others as they were
    state.commit(torch.ones(3, dtype=torch.long), L)
    for row in range(3):
        kept_tokens[row].append(int(last[row]))
    state.keep_rows(torch.tensor([2, 0]))
    assert state.rows.tolist() == [2, 0]
    logits = dec.head(state.token_states(torch.tensor([21, 22]), 0, L))[:, -1]
    for i, row in enumerate([2, 0]):
        expected = _reference_logits(vlm, batch, row, kept_tokens[row] + [21 + i])
        torch.testing.assert_close(logits[i], expected, atol=2e-4, rtol=1e-4)


@torch.no_grad()
def test_imitation_attention_state_follows_holes_and_compaction(monkeypatch):
    monkeypatch.setattr(BatchState, "compact_ratio", 0.0)
    vlm = chaotic_(tiny_vlm("tiny-llava"))
    dec, n = vlm.decoder, 2
    torch.manual_seed(0)
    net = ImitationNetwork(dec.hidden_size, residual=False, attention=True).eval()
    batch = make_inputs("tiny-llava", [3, 6])
    state, runner = BatchState(dec, vlm.encode(**batch)), ImitationRunner(net)
    runner.observe(state, state.prefill(0, n), None)
    appended = torch.tensor([[30, 31, 32], [40, 41, 42]])
    for j in range(3):
        runner.observe(state, state.token_states(appended[:, j], j, n), j)
    state.commit(torch.tensor([1, 3]), n)  # row 0 keeps one of three: two holes, then compacted
    x = runner.imitate(state, state.token_states(torch.tensor([50, 51]), 0, n), 0)[:, -1]
    for row, tokens in enumerate([[30, 50], [40, 41, 42, 51]]):
        keep = batch["attention_mask"][row].bool()
        ids = torch.cat([batch["input_ids"][row, keep], torch.tensor(tokens)])[None]
        embeds = vlm.merge_image(ids, batch["pixel_values"][row : row + 1])
        pos = torch.arange(embeds.shape[1])[None]
        x_n = dec.run_layers(dec.embed(embeds, pos), 0, n, None, pos)
        torch.testing.assert_close(x[row], net(x_n)[0, -1], atol=2e-4, rtol=1e-4)
