"""The three stage modules: a fast_dev_run fit each, frozen backbone, checkpoints, export and the mixed schedule."""

from functools import partial

import pytest
import torch
from lightning.pytorch import Callback

from lightning_ssd.backbones import load_backbone
from lightning_ssd.backbones.vlm import vision_inputs
from lightning_ssd.decoding.generate import generate
from lightning_ssd.models import FineTuneModule, ImitationModule, MixedModule
from lightning_ssd.models.base import warmup_cosine
from lightning_ssd.models.components.fingerprint import BackboneMismatchError
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.finetune import vision_encoder
from tests.helpers import TINY, TINY_NEW
from tests.models.helpers import tiny_data, tiny_trainer

EVAL_KEYS = ("val/full/accuracy", "val/draft/speedup", "val/ssd/tau", "val/ssd/alpha", "val/ssd_identical")


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, after, prefix):
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def _assert_logged_tau_is_decoded_again(module, data, metrics):
    """The logged tau is that of decoding the validation batch again with the trained module's SSD decoder."""
    batch = next(iter(data.val_dataloader()))
    again = generate(module.vlm, module.decoders()["ssd"], input_ids=batch["prompt_input_ids"],
                     attention_mask=batch["prompt_attention_mask"], max_new_tokens=module.max_new_tokens,
                     **vision_inputs(batch))
    assert metrics["val/ssd/tau"].item() == pytest.approx(again.mean_accepted_length, rel=1e-6)


@pytest.mark.parametrize("name", TINY + TINY_NEW)
def test_imitation_fast_dev_run(name, tmp_path):
    module = ImitationModule(name, n=2, max_new_tokens=6)
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    data = tiny_data(name)
    trainer.fit(module, data)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/cosine", "train/kl", "train/ce", "val/loss", *EVAL_KEYS} <= set(metrics)
    assert "val/draft_imit/speedup" in metrics
    assert metrics["val/ssd_identical"].item() == 1.0
    _assert_logged_tau_is_decoded_again(module, data, metrics)


@pytest.mark.parametrize("name", ["tiny-blip2-opt", *TINY_NEW])
def test_finetune_fast_dev_run_on_captions(name, tmp_path):
    module = FineTuneModule(name, n=2, max_new_tokens=6, export_dir=str(tmp_path / "backbone"))
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    data = tiny_data(name, task="caption")
    trainer.fit(module, data)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/full/CIDEr", "val/ssd/BLEU-4", "val/ssd_identical"} <= set(metrics)
    assert "val/draft_imit/CIDEr" not in metrics  # no imitation network in this stage
    # SSD writes the full model's captions, so every caption score is the full model's
    assert metrics["val/ssd_identical"].item() == 1.0
    scores = [k.removeprefix("val/full/") for k in metrics if k.startswith("val/full/") and "per_token" not in k]
    assert {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores)
    assert {k: metrics[f"val/ssd/{k}"].item() for k in scores} == {k: metrics[f"val/full/{k}"].item() for k in scores}
    # val/loss is eq. 1, the cross-entropy that the transformers model itself computes from the labels
    batch = next(iter(data.val_dataloader()))
    with torch.no_grad():
        reference = module.eval().vlm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            labels=batch["labels"], **vision_inputs(batch)).loss
    assert metrics["val/loss"].item() == pytest.approx(reference.item(), rel=5e-5)


def test_mixed_fast_dev_run(tmp_path):
    name = "tiny-llava"
    module = MixedModule(name, n=2, joint_epochs=1, w_full_ce=0.5, max_new_tokens=6,
                         export_dir=str(tmp_path / "backbone"))
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    data = tiny_data(name)
    trainer.fit(module, data)
    metrics = trainer.callback_metrics
    assert {"train/full_ce", "train/draft_loss", "val/ssd/tau"} <= set(metrics)
    # the joint phase optimises w_full_ce * CE(o_L, y*) + the draft losses
    expected = 0.5 * metrics["train/full_ce"].item() + metrics["train/draft_loss"].item()
    assert metrics["train/loss"].item() == pytest.approx(expected, rel=1e-6)
    assert metrics["val/ssd_identical"].item() == 1.0
    _assert_logged_tau_is_decoded_again(module, data, metrics)


def test_imitation_trains_only_its_own_weights(tmp_path):
    name = "tiny-blip2-t5"
    module = ImitationModule(name, n=1, lr=1e-2, warmup_steps=0)
    before = _snapshot(module)
    tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, tiny_data(name))
    after = _snapshot(module)
    assert _changed(before, after, "vlm.") == []
    assert _changed(before, after, "imitation_net.") and _changed(before, after, "objective.fusion.")
    assert not any(p.requires_grad for p in module.vlm.parameters())
    assert not module.vlm.training and module.imitation_net.training  # the teacher stays in eval mode


# the frozen image encoder, what trains of the vision side (projector / merger), and the LLM, by parameter prefix
FROZEN_VISION = {
    "tiny-blip2-opt": ("vlm.model.vision_model.", "vlm.model.qformer.", "vlm.model.language_model."),
    "tiny-llava-next": ("vlm.model.model.vision_tower.", "vlm.model.model.multi_modal_projector.",
                        "vlm.model.model.language_model."),
    "tiny-qwen2.5-vl": ("vlm.model.model.visual.blocks.", "vlm.model.model.visual.merger.",
                        "vlm.model.model.language_model."),
}


@pytest.mark.parametrize("name", list(FROZEN_VISION))
def test_finetune_keeps_vision_frozen_and_exports_the_backbone(name, tmp_path):
    frozen, projector, llm = FROZEN_VISION[name]
    module = FineTuneModule(name, lr=1e-2, warmup_steps=0, export_dir=str(tmp_path / "exported"))
    before = _snapshot(module)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, tiny_data(name))
    after = _snapshot(module)
    assert _changed(before, after, frozen) == []
    assert _changed(before, after, projector)
    assert _changed(before, after, llm)
    assert not any(m.training for encoder in vision_encoder(module.vlm) for m in encoder.modules())
    assert module.vlm.decoder.layers.training  # dropout of the LLM is on while it trains
    reloaded = load_backbone(str(tmp_path / "exported"))
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, module.vlm.state_dict()[key], rtol=0, atol=0)


def test_imitation_checkpoint_holds_only_trainable_weights(tmp_path):
    name = "tiny-blip2-opt"
    module = ImitationModule(name, n=2, fusion="attention", lr=1e-2, warmup_steps=0)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, tiny_data(name))
    path = tmp_path / "imitation.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    trainable = {k for k, p in module.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable
    assert ckpt["backbone"]["path"] == name and ckpt["backbone"]["n"] == 2
    assert ckpt["backbone"]["fingerprint"]["num_layers"] == module.vlm.decoder.num_layers

    restored = ImitationModule.load_from_checkpoint(path)
    for key in trainable:
        torch.testing.assert_close(restored.state_dict()[key], module.state_dict()[key], rtol=0, atol=0)
    with pytest.raises(BackboneMismatchError, match="weights: checkpoint"):
        ImitationModule.load_from_checkpoint(path, backbone_seed=1)  # same preset, other weights
    with pytest.raises(BackboneMismatchError, match="num_layers|hidden_size|family"):
        ImitationModule.load_from_checkpoint(path, backbone="base-blip2-opt")
    with pytest.raises(BackboneMismatchError, match="n=2"):
        ImitationModule.load_from_checkpoint(path, n=1)
    with pytest.raises(KeyError, match="unexpected"):
        ImitationModule.load_from_checkpoint(path, fusion="average")


@pytest.mark.parametrize("attention", [False, True])
def test_cached_targets_give_the_same_losses(tmp_path, monkeypatch, attention):
    name = "tiny-blip2-opt"
    data = tiny_data(name)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    net = partial(ImitationNetwork, attention=attention, dropout=0.0)
    module = ImitationModule(name, n=2, imitation=net, cache_targets=True).train()
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero last layer, so that the attention path shapes the losses
        for p in module.imitation_net.parameters():
            p.normal_(std=0.1)
    first = module.compute_losses(batch)
    assert len(module.target_cache) == len(batch["sample_ids"])

    def backbone_used(*args, **kwargs):
        raise AssertionError("the backbone ran although every sample of the batch was cached")

    monkeypatch.setattr(module.vlm, "teacher_forced", backbone_used)
    second = module.compute_losses(batch)
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_mixed_freezes_the_backbone_after_the_joint_epochs(tmp_path):
    name = "tiny-blip2-opt"
    module = MixedModule(name, n=2, joint_epochs=1, lr=1e-2, backbone_lr=1e-2, warmup_steps=0,
                         export_dir=str(tmp_path / "backbone"))
    snapshots, llm_training = [], []

    class EpochSnapshots(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(_snapshot(pl_module))
            llm_training.append(pl_module.vlm.model.language_model.training)

    start = _snapshot(module)
    tiny_trainer(tmp_path, max_epochs=3, limit_val_batches=0, callbacks=[EpochSnapshots()]).fit(
        module, tiny_data(name))
    assert _changed(start, snapshots[0], "vlm.model.language_model.")  # joint epoch: the backbone learns
    assert _changed(snapshots[0], snapshots[2], "vlm.") == []  # then it is frozen
    assert _changed(snapshots[1], snapshots[2], "imitation_net.")
    assert module.backbone_frozen and (tmp_path / "backbone" / "config.json").is_file()
    assert llm_training == [True, False, False]  # dropout on while the backbone learns, off once frozen


def test_bad_exit_layer_is_refused():
    with pytest.raises(ValueError, match=r"^model.init_args.n=4: the draft exit layer must be in \[1, L-1\] = \[1, 3\]"
                       ):
        ImitationModule("tiny-blip2-opt", n=4)


@pytest.mark.parametrize(("modes", "message"), [
    ([], "eval_modes is empty"),
    (["full", "beam"], r"unknown mode\(s\) \['beam'\]"),
    (["draft_imit"], "'draft_imit' needs an imitation network"),
])
def test_bad_eval_modes_are_refused(modes, message):
    module = FineTuneModule("tiny-llava", n=2, eval_modes=modes)
    with pytest.raises(ValueError, match=message):
        module.setup("validate")


def test_warmup_cosine_schedule():
    factor = warmup_cosine(warmup_steps=4, total_steps=14)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0 and factor(9) == pytest.approx(0.5) and factor(14) == pytest.approx(0.0)
    assert factor(100) == pytest.approx(0.0)
    assert warmup_cosine(0, 10)(0) == 1.0
