"""What the three training stages share: the backbone, the optimiser, teacher forcing and decoding evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lightning_ssd.backbones import absolute_backbone, load_backbone, load_processor
from lightning_ssd.backbones.vlm import SplitVLM, vision_inputs
from lightning_ssd.decoding.checks import check_modes
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder, generate
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.errors import UsageError
from lightning_ssd.models.evaluation import DecodingEvaluator, EvalSummary


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return factor


EVAL_ONLY_ARGS = ("draft", "confidence_threshold", "max_new_tokens", "eval_modes", "meteor", "num_samples",
                  "timing_repeats")


class TeacherForced:
    """Teacher-forced decoder states of a batch, restricted to the N positions that predict a target token.

    Attributes:
        states: [x_0, ..., x_L], each (N, D), pre-norm residual states at the target positions.
        sequences: the same states over all positions, each (B, T, D); `mask` (B, T) selects the target positions.
        targets: (N,) the ground-truth next tokens y*.
        counts: target positions of each sample, in batch order (they sum to N).

    `keep` (L, B), optional, skips layer l for the samples where it is False (layer dropout, see
    `SplitDecoder.layer_states`).
    """

    def __init__(self, vlm: SplitVLM, batch: dict[str, Any], keep: torch.Tensor | None = None) -> None:
        prompt, targets = vlm.teacher_forced(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                             labels=batch["labels"], **vision_inputs(batch))
        dec = vlm.decoder
        states = dec.layer_states(prompt.inputs_embeds, prompt.position_ids, prompt.attention_mask, prompt.encoder,
                                  keep=keep)
        mask = targets != -100  # (B, T)
        self.mask = mask
        self.sequences = states  # (B, T, D) each: what a sequence-level imitation network (attention) reads
        self.states = [x[mask] for x in states]
        self.targets = targets[mask]
        self.counts = mask.sum(-1).tolist()


class SSDModule(LightningModule):
    """Base of the stage modules: loads the backbone and evaluates by decoding with the SSD engine.

    The draft settings (n, the imitation network a subclass adds, d and the confidence threshold) are held by one
    `DraftSpec`, `self.spec`, checked against the backbone here and handed as it is to `build_decoder`; `n`, `draft`,
    `confidence_threshold` and `imitation` read it.

    Args:
        backbone: a preset name (tiny-blip2-opt, base-blip2-opt, ...) or a checkpoint folder written by
            `save_backbone` (for example the fine-tuning stage's export); a folder is recorded in the module's
            checkpoints by its absolute path.
        n: draft exit layer, 1 <= n <= L - 1; None only for a module that never decodes with a draft.
        draft: draft tokens per cycle: an int d, or "dynamic" (paper eq. 5).
        confidence_threshold: SSD stops a cycle's drafting at the first draft token whose top-1 probability is
            below this value; None always drafts d tokens. Output is identical either way.
        max_new_tokens: generation length cap at validation/test/predict.
        eval_modes: decoders run at validation/test: full, draft, draft_imit, ssd; None uses the stage's default.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up steps before the cosine decay.
        backbone_seed: initialisation seed of a preset backbone (ignored for a checkpoint folder).
        backbone_dtype: dtype the backbone weights are loaded in (bfloat16 halves the memory of a large VLM);
            with bfloat16/float16 set trainer.precision to bf16-mixed/16-mixed, so the float32 imitation network
            runs under autocast.
        meteor: score METEOR in caption-like evaluations (a JVM start per mode and epoch).
        num_samples: decoded samples kept per evaluation epoch for the TensorBoard text view.
        timing_repeats: decodes of each validation/test batch by each mode, for ms/token and speedups (the run of
            median time counts; quality and acceptance are the same in each greedy run). Each adds a full decode
            of the split; the first batch is decoded once untimed, as a warm-up, in any case.
    """

    default_modes: tuple[str, ...] = ("full", "draft", "ssd")

    def __init__(
        self,
        backbone: str,
        n: int | None = None,
        draft: int | Literal["dynamic"] = 4,
        confidence_threshold: float | None = None,
        max_new_tokens: int = 32,
        eval_modes: list[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
        backbone_seed: int = 0,
        backbone_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        meteor: bool = False,
        num_samples: int = 4,
        timing_repeats: int = 1,
    ) -> None:
        super().__init__()
        # Evaluation settings stay out of the checkpoint's hyperparameters: LightningCLI copies those over the config
        # when --ckpt_path is given, and a test run must be free to choose its own d, length cap and decoders.
        self.save_hyperparameters(ignore=list(EVAL_ONLY_ARGS))
        # A relative folder would name another place, or nothing, when the checkpoint is used from another directory
        self.hparams.backbone = absolute_backbone(backbone)
        self.vlm = load_backbone(backbone, dtype=getattr(torch, backbone_dtype), seed=backbone_seed)
        self.spec = DraftSpec(n, None, draft, confidence_threshold, prefix="model.init_args.")
        if n is not None:
            self.spec.check(self.vlm.decoder)
        if max_new_tokens < 1:
            raise UsageError(f"model.init_args.max_new_tokens must be >= 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self._eval_modes = eval_modes
        if timing_repeats < 1:
            raise ValueError(f"model.init_args.timing_repeats must be >= 1, got {timing_repeats}")
        self._meteor, self._num_samples, self._timing_repeats = meteor, num_samples, timing_repeats
        self.last_eval: EvalSummary | None = None

    def setup(self, stage: str) -> None:
        # Built here, once subclasses have set their imitation network, so that modes can be checked against it.
        if not hasattr(self, "val_eval"):
            modes = self.modes_for(self.imitation) if self._eval_modes is None else self._eval_modes
            modes = check_modes(modes, self.imitation is not None, self.n, self.spec.setting("eval_modes"))
            self.val_eval, self.test_eval = (
                DecodingEvaluator(modes, self._meteor, self._num_samples, timing_repeats=self._timing_repeats)
                .to(self.device) for _ in range(2))

    def modes_for(self, imitation: nn.Module | None) -> tuple[str, ...]:
        if self.n is None:
            return ("full",)
        return ("full", "draft", "draft_imit", "ssd") if imitation is not None else self.default_modes

    @property
    def n(self) -> int | None:
        """The draft exit layer; None for a module that never decodes with a draft."""
        return self.spec.n

    @property
    def draft(self) -> int | str:
        """d per cycle at evaluation: an int, or "dynamic" (paper eq. 5)."""
        return self.spec.draft

    @property
    def confidence_threshold(self) -> float | None:
        return self.spec.confidence_threshold

    @property
    def imitation(self) -> nn.Module | None:
        """The imitation network used for drafting; None drafts with the plain early exit."""
        return self.spec.imitation

    @cached_property
    def tokenizer(self):
        return load_processor(self.hparams.backbone).tokenizer

    # -- training -------------------------------------------------------------------------------------------------

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch; "loss" is the one optimised."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        size = batch["input_ids"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=size)
        return losses["loss"]

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups; by default one group of every trainable parameter at `lr`."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [g for g in self.param_groups() if g["params"]]
        if not groups:
            raise ValueError(f"{type(self).__name__} has no trainable parameters")
        hp = self.hparams
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = LambdaLR(optimizer, warmup_cosine(hp.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation -----------------------------------------------------------------------------------------------

    def decoders(self) -> dict[str, BatchDecoder]:
        return {
            mode: build_decoder(mode, self.vlm.decoder, self.vlm.eos_token_id, self.spec)
            for mode in self.val_eval.modes
        }

    def decode_text(self, tokens: list[list[int]]) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def _eval_step(self, evaluator: DecodingEvaluator, stage: str, batch: dict[str, Any]) -> None:
        size = batch["input_ids"].shape[0]
        if batch["labels"].ne(-100).any():  # test splits may come without targets
            with torch.no_grad():
                losses = self.compute_losses(batch)
            self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=size)
        evaluator.update(self.vlm, self.decoders(), batch, self.decode_text, self.max_new_tokens)

    def _eval_epoch_end(self, evaluator: DecodingEvaluator, stage: str) -> None:
        if self.trainer.sanity_checking:
            evaluator.reset()
            return
        summary = evaluator.compute(stage)
        scalars = {f"{stage}/{k}": v for k, v in summary.scalars.items() if math.isfinite(v)}
        self.log_dict(scalars, sync_dist=True)
        self.last_eval = summary
        evaluator.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(self.val_eval, "val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_eval, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(self.test_eval, "test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_eval, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One row per sample: its dataset index, id, image path, prompt, text and tokens, and for SSD tau and the
        drafts accepted per cycle. SSD decodes when a draft layer is set (token-identical to greedy), else plain."""
        mode = "ssd" if "ssd" in self.val_eval.modes else "full"
        result = generate(self.vlm, self.decoders()[mode], input_ids=batch["prompt_input_ids"],
                          attention_mask=batch["prompt_attention_mask"], max_new_tokens=self.max_new_tokens,
                          **vision_inputs(batch))
        size = len(result.sequences)
        rows = []
        for i, (seq, text) in enumerate(zip(result.sequences, self.decode_text(result.tokens), strict=True)):
            row = {"index": batch.get("indices", [-1] * size)[i], "id": batch["sample_ids"][i],
                   "image": batch.get("images", [None] * size)[i], "prompt": batch.get("queries", [None] * size)[i],
                   "text": text, "tokens": list(seq.tokens)}
            if mode == "ssd":
                row.update(seq.acceptance_record())
            rows.append(row)
        return rows
