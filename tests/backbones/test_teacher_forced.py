import pytest
import torch
import torch.nn.functional as F

from tests.helpers import TINY, TOKENS, image_prefix_length, make_inputs, tiny_vlm


@pytest.mark.parametrize("name", TINY)
def test_teacher_forced_loss_matches_model_loss(name):
    vlm = tiny_vlm(name)
    batch = make_inputs(name, [6, 6])  # equal lengths: no padding, so the model's own loss is comparable
    if vlm.decoder.is_encoder_decoder:
        labels = torch.randint(5, TOKENS.vocab_size, (2, 5))
        labels[1, -2:] = -100
    else:
        labels = batch["input_ids"].clone()
        labels[:, : image_prefix_length(name) + 2] = -100
    with torch.no_grad():
        prompt, targets = vlm.teacher_forced(**batch, labels=labels)
        states = vlm.decoder.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask,
                                          prompt.encoder)
        logits = vlm.decoder.head(states[-1])
        ours = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        ref = vlm.model(**batch, labels=labels).loss
    assert len(states) == vlm.decoder.num_layers + 1
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)
