"""LayerSkip's recipe: dropout rates, exit-loss scales and curricula by hand, per-sample layer skipping in every
family, no dropout at evaluation, equality with plain fine-tuning when switched off, a fit, and its errors."""

from functools import partial
from pathlib import Path

import pytest
import torch
import yaml

from lightning_ssd.backbones import load_backbone
from lightning_ssd.backbones.vlm import vision_inputs
from lightning_ssd.models import FineTuneModule, ImitationModule
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.components.layerskip import (
    LayerSkipRecipe,
    depth_scale,
    dropout_rates,
    enabled_exits,
    exit_loss_weights,
    exit_scales,
    finite_total_steps,
    sample_keep_mask,
    time_scale,
)
from tests.models.helpers import tiny_data, tiny_trainer

FAMILIES = ("tiny-llava", "tiny-blip2-opt", "tiny-blip2-t5", "tiny-qwen2.5-vl")
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _batch(name: str, split: str = "train") -> dict:
    data = tiny_data(name)
    data.setup("fit")
    loader = data.train_dataloader() if split == "train" else data.val_dataloader()
    return next(iter(loader))


# -- the pure parts, by hand ------------------------------------------------------------------------------------


def test_exponential_dropout_rates_by_hand():
    rates = dropout_rates(LayerSkipRecipe(p_max=0.2), num_layers=4)
    # D(l) = e^{l ln2 / 3} - 1 = 2^{l/3} - 1: 0, 0.259921, 0.587401, 1
    assert rates == pytest.approx([0.0, 0.2 * 0.2599210499, 0.2 * 0.5874010520, 0.2], abs=1e-9)
    assert rates[0] == 0.0 and rates[-1] == 0.2  # exactly: zero at layer 0, p_max at the last layer
    assert all(a < b for a, b in zip(rates, rates[1:], strict=False))
    deep = depth_scale(24)
    assert deep[0] == 0.0 and deep[-1] == 1.0 and all(a < b for a, b in zip(deep, deep[1:], strict=False))


def test_linear_dropout_rates_and_time_scale_by_hand():
    assert dropout_rates(LayerSkipRecipe(p_max=0.3, depth_scale="linear"), 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # S_exp(t) = 2^{t / (T-1)} - 1 over T = 5 steps
    assert [time_scale(t, 5, "exponential") for t in (0, 2, 4)] == pytest.approx([0.0, 2**0.5 - 1, 1.0])
    assert time_scale(3, 5, "constant") == 1.0
    recipe = LayerSkipRecipe(p_max=0.2, time_scale="exponential")
    assert dropout_rates(recipe, 4, step=0, total_steps=5) == [0.0] * 4
    assert dropout_rates(recipe, 4, step=4, total_steps=5) == dropout_rates(LayerSkipRecipe(p_max=0.2), 4)


def test_exit_scales_by_hand():
    # e(l) = e_scale * sum_{i<=l} i for l < L-1; e(L-1) = L-1 + e_scale * sum_{i<=L-2} i
    assert exit_scales(4, 0.5) == [0.0, 0.5, 1.5, 3 + 0.5 * 3]
    weights = exit_loss_weights(LayerSkipRecipe(e_scale=0.5, curriculum="none"), 4)
    assert weights == pytest.approx([0.0, 0.5 / 6.5, 1.5 / 6.5, 4.5 / 6.5])
    assert sum(weights) == pytest.approx(1.0)
    assert exit_loss_weights(LayerSkipRecipe(e_scale=0.0, curriculum="none"), 4) == [0.0, 0.0, 0.0, 1.0]


def test_rotational_curriculum_by_hand():
    recipe = LayerSkipRecipe(curriculum="rotational", rotation_period=2)
    assert enabled_exits(recipe, 6, step=0) == [True, False, True, False, True, True]
    assert enabled_exits(recipe, 6, step=1) == [False, True, False, True, False, True]
    assert enabled_exits(recipe, 6, step=2) == enabled_exits(recipe, 6, step=0)  # each exit once every R steps
    period4 = LayerSkipRecipe(curriculum="rotational", rotation_period=4)
    assert enabled_exits(period4, 6, step=1) == [False, True, False, False, False, True]
    assert enabled_exits(period4, 6, step=3) == [False, False, False, True, False, True]  # last layer always on
    # L = 4, R = 2, e_scale = 1, step 1: exits 1 and 3 on, e(1) = 1, e(3) = 3 + 3 = 6
    weights = exit_loss_weights(LayerSkipRecipe(e_scale=1.0, rotation_period=2), 4, step=1)
    assert weights == pytest.approx([0.0, 1 / 7, 0.0, 6 / 7])


def test_gradual_curriculum_by_hand():
    recipe = LayerSkipRecipe(curriculum="gradual")
    # L = 4, T = 16: one more exit every T / 2L = 2 steps, from layer 3 down to layer 0
    expected = {0: [False, False, False, True], 1: [False, False, False, True], 2: [False, False, True, True],
                4: [False, True, True, True], 5: [False, True, True, True], 6: [True, True, True, True],
                15: [True, True, True, True]}
    for step, on in expected.items():
        assert enabled_exits(recipe, 4, step=step, total_steps=16) == on, step


def test_keep_mask_draws_per_sample_and_only_where_needed():
    state = torch.get_rng_state()
    assert sample_keep_mask([0.0, 0.0, 0.0], batch_size=5).all()
    assert torch.equal(torch.get_rng_state(), state)  # no dropout, no random numbers: plain fine-tuning's stream
    keep = sample_keep_mask([0.0, 1.0, 0.5], batch_size=4000, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (3, 4000) and keep[0].all() and not keep[1].any()
    assert keep[2].float().mean().item() == pytest.approx(0.5, abs=0.03)  # a Bernoulli per sample, not per batch


# -- layer dropout in the split decoders -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_dropped_layer_passes_that_sample_through(name):
    vlm = load_backbone(name)
    batch = _batch(name)
    with torch.no_grad():
        prompt, _ = vlm.teacher_forced(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                       labels=batch["labels"], **vision_inputs(batch))
        args = (prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask, prompt.encoder)
        plain = vlm.decoder.layer_states(*args)
        keep = torch.ones(vlm.decoder.num_layers, prompt.inputs_embeds.shape[0], dtype=torch.bool)
        keep[1, 0] = False  # layer 1 skipped for sample 0 only
        dropped = vlm.decoder.layer_states(*args, keep=keep)
        everything = vlm.decoder.layer_states(*args, keep=torch.ones_like(keep))
    assert torch.equal(dropped[2][0], dropped[1][0])  # x_2 = x_1 for the dropped sample
    assert torch.equal(dropped[1], plain[1])
    assert not torch.allclose(dropped[2][0], plain[2][0])
    for x, ref in zip(dropped[1:], plain[1:], strict=True):  # the other samples are untouched
        torch.testing.assert_close(x[1:], ref[1:], rtol=0, atol=1e-6)
    assert all(torch.equal(x, ref) for x, ref in zip(everything, plain, strict=True))


def test_keep_mask_of_the_wrong_shape_is_refused():
    vlm = load_backbone("tiny-llava")
    x = torch.zeros(2, 3, vlm.decoder.hidden_size)
    positions = torch.arange(3).expand(2, 3)
    with pytest.raises(ValueError, match=r"keep mask must be \(L, B\) = \(4, 2\)"):
        vlm.decoder.layer_states(x, positions, keep=torch.ones(4, 3, dtype=torch.bool))


# -- the module --------------------------------------------------------------------------------------------------


def test_no_dropout_at_evaluation():
    name = "tiny-llava"
    batch = _batch(name, "val")
    plain, recipe = FineTuneModule(name), FineTuneModule(name, layerskip=LayerSkipRecipe(p_max=1.0, e_scale=1.0))
    plain.eval()
    recipe.eval()
    with torch.no_grad():
        ours, ref = recipe.compute_losses(batch), plain.compute_losses(batch)
        assert torch.equal(ours["loss"], ref["loss"])  # validation: the full model, no layer skipped
        assert torch.equal(ours["exit_ce_4"], ref["loss"])
        assert set(ours) == {"loss", *(f"exit_ce_{n}" for n in range(1, 5))}  # every exit reported
        recipe.train()
        assert not torch.equal(recipe.compute_losses(batch)["exit_ce_4"], ref["loss"])  # p_max = 1: layer 3 skipped


def test_switched_off_recipe_is_plain_fine_tuning():
    name = "tiny-blip2-opt"
    batch = _batch(name)
    plain = FineTuneModule(name)
    off = FineTuneModule(name, layerskip=LayerSkipRecipe(p_max=0.0, e_scale=0.0, curriculum="none"))
    assert plain.training and off.training
    torch.manual_seed(0)
    ref = plain.compute_losses(batch)["loss"]
    torch.manual_seed(0)
    ours = off.compute_losses(batch)
    assert torch.equal(ours["loss"], ref) and set(ours) == {"loss", "exit_ce_4"}


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_dev_run_logs_the_exit_losses(name, tmp_path):
    recipe = LayerSkipRecipe(p_max=0.2, e_scale=1.0, curriculum="none", time_scale="exponential")
    module = FineTuneModule(name, layerskip=recipe, n=2, eval_modes=["full", "ssd"], max_new_tokens=4,
                            export_dir=str(tmp_path / "backbone"))
    assert module.hparams.layerskip == {"p_max": 0.2, "depth_scale": "exponential", "time_scale": "exponential",
                                        "e_scale": 1.0, "curriculum": "none", "rotation_period": 8}
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    trainer.fit(module, tiny_data(name))
    metrics = trainer.callback_metrics
    L = module.vlm.decoder.num_layers
    # e(0) = 0: the exit after layer 0 has no weight in training (the paper's scale), but is reported at validation
    assert {"train/loss", *(f"train/exit_ce_{n}" for n in range(2, L + 1))} <= set(metrics)
    assert "train/exit_ce_1" not in metrics
    assert {"val/loss", *(f"val/exit_ce_{n}" for n in range(1, L + 1))} <= set(metrics)
    assert metrics["val/ssd_identical"].item() == 1.0
    assert (tmp_path / "backbone").is_dir()


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("p_max", -0.1, "layerskip.p_max=-0.1 must be in"),
    ("p_max", 1.5, "layerskip.p_max=1.5 must be in"),
    ("e_scale", 2.0, "layerskip.e_scale=2.0 must be in"),
    ("curriculum", "cyclic", "layerskip.curriculum='cyclic' is unknown"),
    ("depth_scale", "quadratic", "layerskip.depth_scale='quadratic' is unknown"),
    ("time_scale", "linear", "layerskip.time_scale='linear' is unknown"),
    ("rotation_period", 0, "layerskip.rotation_period=0 must be an integer >= 1"),
    ("rotation_period", 2.5, "layerskip.rotation_period=2.5 must be an integer >= 1"),
])
def test_impossible_settings_name_the_setting(setting, value, message):
    with pytest.raises(ValueError, match=f"model.init_args.{message}"):
        LayerSkipRecipe(**{setting: value})


def test_schedules_over_an_endless_fit_are_refused():
    with pytest.raises(ValueError, match="gradual curriculum and the exponential time scale need a finite"):
        finite_total_steps(float("inf"))
    assert finite_total_steps(250.0) == 250
    assert LayerSkipRecipe(curriculum="gradual").needs_total_steps
    assert not LayerSkipRecipe(curriculum="rotational").needs_total_steps


# -- the Kangaroo configuration --------------------------------------------------------------------------------


def test_kangaroo_config_builds_an_attention_adapter_trained_on_kl_alone():
    config = yaml.safe_load((EXPERIMENTS / "synthetic" / "kangaroo.yaml").read_text())["model"]["init_args"]
    network = config.pop("imitation")["init_args"]
    for key in ("backbone", "eval_modes", "max_new_tokens", "cache_targets"):
        config.pop(key)
    module = ImitationModule("tiny-llava", imitation=partial(ImitationNetwork, **network), **config)
    adapter = module.imitation_net
    assert adapter.attention is not None and len(adapter.mlp) == 0 and module.objective.fusion is None
    assert module.confidence_threshold == 0.6 and module.objective.kl_direction == "forward"
    losses = module.compute_losses(_batch("tiny-llava"))
    assert set(losses) == {"loss", "kl"} and torch.equal(losses["loss"], losses["kl"])
