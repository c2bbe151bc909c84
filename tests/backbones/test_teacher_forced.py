import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lightning_ssd.backbones import load_backbone, load_processor
from lightning_ssd.backbones.vlm import vision_inputs
from lightning_ssd.data.collate import VLCollator
from lightning_ssd.data.readers.base import Record, Sample
from tests.helpers import TINY, TINY_NEW, TOKENS, chaotic_, image_prefix_length, make_inputs, tiny_vlm


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


@pytest.mark.parametrize("name", TINY_NEW)
def test_teacher_forced_loss_matches_model_loss_on_collated_batches(name):
    """Images of two sizes (different image token counts) and right-padded targets, as the training stages see; the
    chaotic weights make positions matter (with the preset's small init a wrong M-RoPE moves the loss by < 1e-4)."""
    vlm, processor = chaotic_(load_backbone(name), std=0.15), load_processor(name)
    images = [Image.fromarray(np.full((h, w, 3), c, dtype=np.uint8)) for w, h, c in ((40, 40, 90), (120, 60, 200))]
    samples = [Sample(image, Record(0, str(i), query=q, target=t)) for i, (image, q, t) in
               enumerate(zip(images, ["how many ?", "what colour is it ?"], ["two", "a red square"], strict=True))]
    batch = VLCollator(processor, vlm.family, "vqa")(samples)
    with torch.no_grad():
        prompt, targets = vlm.teacher_forced(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                             labels=batch["labels"], **vision_inputs(batch))
        states = vlm.decoder.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask)
        ours = F.cross_entropy(vlm.decoder.head(states[-1]).flatten(0, 1), targets.flatten(), ignore_index=-100)
        types = {"mm_token_type_ids": (batch["input_ids"] == vlm.image_token_id).int()}  # what Qwen's processor adds
        ref = vlm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                        **vision_inputs(batch), **(types if vlm.family == "qwen2.5-vl" else {})).loss
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)
