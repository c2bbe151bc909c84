import pytest
import torch

from lightning_ssd.backbones.vlm import positions_from_mask
from tests.helpers import TINY, make_inputs, tiny_vlm

ATOL = 1e-5


def _reference_logits(vlm, batch, decoder_input_ids=None):
    kwargs = dict(batch)
    if vlm.decoder.is_encoder_decoder:
        kwargs["decoder_input_ids"] = decoder_input_ids
    else:
        kwargs["position_ids"] = positions_from_mask(batch["attention_mask"])
    return vlm.model(**kwargs).logits


@pytest.mark.parametrize("name", TINY)
def test_split_forward_matches_model_forward_with_padding(name):
    vlm = tiny_vlm(name)
    batch = make_inputs(name, [5, 9, 2])
    with torch.no_grad():
        prompt = vlm.encode(**batch)
        dec = vlm.decoder
        if dec.is_encoder_decoder:
            # Feed a few decoder tokens after the start token so the decoder sees more than one position.
            extra = torch.randint(5, 90, (3, 4))
            dec_ids = torch.cat([torch.zeros(3, 1, dtype=torch.long), extra], 1)
            embeds = dec.embed_tokens(dec_ids)
            positions = torch.arange(5).expand(3, 5)
            mask = torch.ones(3, 5, dtype=torch.long)
            ref = _reference_logits(vlm, batch, dec_ids)
        else:
            embeds, positions, mask = prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask
            ref = _reference_logits(vlm, batch)
        n = dec.num_layers // 2
        cache = dec.new_cache()
        x_n = dec.run_layers(dec.embed(embeds, positions), 0, n, cache, positions, mask, prompt.encoder)
        x_L = dec.run_layers(x_n, n, dec.num_layers, cache, positions, mask, prompt.encoder)
        logits = dec.head(x_L)
    real = mask.bool()
    assert torch.allclose(logits[real], ref[real], atol=ATOL), (logits[real] - ref[real]).abs().max()


@pytest.mark.parametrize("name", TINY)
def test_split_incremental_decode_with_uneven_layer_caches(name):
    """Shallow layers run ahead on 3 tokens, deep layers then catch up in one pass: same logits as step by step."""
    vlm = tiny_vlm(name)
    batch = make_inputs(name, [6])
    dec = vlm.decoder
    L, n = dec.num_layers, 1
    new = torch.randint(5, 90, (1, 3))
    with torch.no_grad():
        prompt = vlm.encode(**batch)
        T = prompt.inputs_embeds.shape[1]

        def prefill(cache):
            x = dec.embed(prompt.inputs_embeds, prompt.position_ids)
            return dec.run_layers(x, 0, L, cache, prompt.position_ids, None, prompt.encoder)

        ref_cache, cache = dec.new_cache(), dec.new_cache()
        prefill(ref_cache)
        prefill(cache)
        ref = []
        for i in range(3):
            pos = torch.tensor([[T + i]])
            x = dec.embed(dec.embed_tokens(new[:, i : i + 1]), pos)
            ref.append(dec.head(dec.run_layers(x, 0, L, ref_cache, pos, None, prompt.encoder)))
        ref = torch.cat(ref, 1)

        shallow = []
        for i in range(3):
            pos = torch.tensor([[T + i]])
            x = dec.embed(dec.embed_tokens(new[:, i : i + 1]), pos)
            shallow.append(dec.run_layers(x, 0, n, cache, pos, None, prompt.encoder))
        assert dec.cache_length(cache, 0) == T + 3 and dec.cache_length(cache, L - 1) == T
        pos = torch.arange(T, T + 3).unsqueeze(0)
        out = dec.head(dec.run_layers(torch.cat(shallow, 1), n, L, cache, pos, None, prompt.encoder))
    assert torch.allclose(out, ref, atol=ATOL), (out - ref).abs().max()
    dec.crop_layers(cache, 0, L, T + 1)
    assert all(dec.cache_length(cache, i) == T + 1 for i in range(L))
