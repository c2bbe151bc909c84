"""The rest of the paper as stages (issue 22): Table 3's dialog and zero-shot splits, Table 2's long answers,
Appendix A.2's one-word answers, and the output-length question.

Each task block fine-tunes its own backbone on its task (the paper fine-tunes BLIP-2 per task; the embedded default is
trained from random initialisation, so a captioner cannot answer dialog questions), trains the imitation network on it
at the n the fine-tune chose, and decodes the task's test split(s) in-process with every decoder of its table
(`task_eval.run_task_eval`). The zero-shot block is trained on in-domain scenes only and tested on the in-, near- and
out-of-domain splits (`lightning_ssd.data.synth.domains`): its near and out rows are also the distribution-shift
question's first half (imitation trained in-domain, tested shifted). Blocks share nothing with Tables 1, 5 and 6, so
`--parts rest` runs them alone. Each block's LayerSkip row continues the task's fine-tuned backbone with LayerSkip's
recipe (layer dropout and early-exit losses, `experiments/synthetic/layerskip.yaml`) for `task_layerskip_epochs`, and
decodes the same test split(s) through that backbone's plain early exit at the exit its own agreement predicts to
decode fastest (`LAYERSKIP_EXIT_RULE`): LayerSkip fine-tunes a pretrained model, and the task's backbone is this
benchmark's pretrained model (Table 1 trains its LayerSkip row from random initialisation instead, beside stage 1).
The distribution-shift question's second half: the in-domain imitation network fine-tuned briefly on a few hundred
near- or out-of-domain training images (`shift_images`, `shift_epochs`), and tested on that split again. The size-
ratio grid (`grid.py`) trains imitation networks of several capacities at several n on the long-answer backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning_ssd.configs import EXPERIMENTS
from lightning_ssd.metrics.judge_client import OpenAICompatibleJudge
from lightning_ssd.reproduce import cli_stages
from lightning_ssd.reproduce.cli_stages import RunContext
from lightning_ssd.reproduce.grid import CAPACITIES, run_grid_test, slug
from lightning_ssd.reproduce.judge_eval import run_judge
from lightning_ssd.reproduce.plan import Stage
from lightning_ssd.reproduce.results import need_record
from lightning_ssd.reproduce.settings import Estimates, Settings
from lightning_ssd.reproduce.task_eval import run_layerskip_eval, run_length_eval, run_task_eval

SYNTHETIC = EXPERIMENTS / "synthetic"
ZERO_SHOT_SPLITS: tuple[str, ...] = ("in", "near", "out")
SHIFTED: tuple[str, ...] = ("near", "out")  # the distribution-shift fine-tune's domains
LENGTH_BLOCK = "long"
LAYERSKIP_COST = 1.3  # a LayerSkip epoch against a plain fine-tune epoch (every exit's loss), as Table 1 estimates it
# LayerSkip's exit: the one its own exits' measured agreement predicts to decode fastest (LayerSkip picks its exit by
# speed). The paper's confidence reward picks layer 1 on these backbones, whose exit LayerSkip's loss scale leaves
# untrained (e(0) = 0): its drafts are then never accepted.
LAYERSKIP_EXIT_RULE = "speedup"


@dataclass(frozen=True)
class TaskBlock:
    """One task's backbone, imitation network and test decodes.

    Attributes:
        name: folder and stage names ("dialog", "zeroshot", "vqa", "long").
        family: "t5" (the settings' t5_backbone) or "llava" (its llava_backbone).
        task: the SyntheticDataModule task.
        splits: test domains decoded (None: the whole world, one split).
        draft_verify: also decode with Draft & Verify (skip set searched on this task's validation prompts).
        length: "long" or "vqa" for the task's own generation cap; None for the settings' max_new_tokens.
        data_args: further SyntheticDataModule arguments (the dialog's rounds per image).
        epochs_scale: the fine-tune's epochs as a multiple of `finetune_epochs` (one description per image gives
            a fifth of the captions' optimizer steps per epoch).
        train_cost: a fine-tune epoch's time relative to the caption fine-tune's on base-llava, for the estimate:
            measured training steps (batch 16, one thread) of base-blip2-t5 took 1.27x base-llava's on captions and
            3.8x on 5-round dialogs, base-llava 1.9x on descriptions; times samples per image over captions' five.
        test_cost: a test stage's time relative to a caption test stage's, for the estimate.
    """

    name: str
    family: str
    task: str
    splits: tuple[str | None, ...] = (None,)
    draft_verify: bool = False
    length: str | None = None
    data_args: tuple[tuple[str, int], ...] = ()
    epochs_scale: int = 1
    train_cost: float = 1.0
    test_cost: float = 1.0

    def backbone(self, s: Settings) -> str:
        return s.t5_backbone if self.family == "t5" else s.llava_backbone

    def max_new_tokens(self, s: Settings) -> int:
        return {"long": s.long_max_new_tokens, "vqa": s.vqa_max_new_tokens}.get(self.length or "", s.max_new_tokens)

    def data(self, s: Settings, split: str | None) -> dict:
        """SyntheticDataModule arguments of this block (the training ones when `split` is "in" or None)."""
        found: dict = {"task": self.task, "max_target_length": max(32, self.max_new_tokens(s)), **dict(self.data_args)}
        trained_in_domain = self.splits != (None,)
        if trained_in_domain:
            found["test_domain"] = split or "in"
        return found

    def overrides(self, s: Settings) -> tuple[str, ...]:
        data = self.data(s, None)
        args = [f"--data.init_args.{k}={v}" for k, v in data.items()]
        return (*args, "--model.init_args.max_new_tokens", str(self.max_new_tokens(s)))


BLOCKS: tuple[TaskBlock, ...] = (
    # 2 rounds per image: a 5-round dialog's history makes a T5 fine-tune 3.8x a caption one's per sample
    TaskBlock("dialog", "t5", "visdial", draft_verify=True, data_args=(("dialog_rounds", 2),), train_cost=1.5,
              test_cost=2.0),
    TaskBlock("zeroshot", "t5", "caption", splits=ZERO_SHOT_SPLITS, train_cost=1.3),
    TaskBlock("vqa", "llava", "vqa", length="vqa", train_cost=0.6, test_cost=1.5),
    TaskBlock("long", "llava", "long", draft_verify=True, length="long", epochs_scale=3, train_cost=0.4,
              test_cost=2.5),
)


@dataclass(frozen=True)
class RestLayout:
    """The files of one seed's task blocks under `root/seed<seed>/rest`."""

    folder: Path

    def block(self, name: str) -> Path:
        return self.folder / "rest" / name

    def finetune_record(self, name: str) -> Path:
        return self.block(name) / "finetune" / "stage.json"

    def backbone(self, name: str) -> Path:
        return self.block(name) / "finetune" / "backbone"

    def imitation_record(self, name: str) -> Path:
        return self.block(name) / "imitation" / "stage.json"

    def checkpoint(self, name: str) -> Path:
        return self.block(name) / "imitation" / "checkpoints" / "last.ckpt"

    def eval_record(self, name: str, split: str | None) -> Path:
        return self.block(name) / f"test_{split or 'all'}.json"

    def layerskip(self, name: str) -> Path:
        """Folder of the block's LayerSkip fine-tune (its backbone in backbone/)."""
        return self.block(name) / "layerskip"

    def layerskip_record(self, name: str, split: str | None) -> Path:
        return self.block(name) / f"layerskip_{split or 'all'}.json"

    def judge_record(self, name: str) -> Path:
        """The judge's scores of the block's answers (Table 2's MM-Vet and LLaVA-W columns)."""
        return self.block(name) / "judge.json"

    def shift(self, split: str) -> Path:
        """Folder of the imitation fine-tuned on `split`'s images (the zero-shot block's backbone)."""
        return self.block("shift") / split

    def shift_record(self, split: str) -> Path:
        return self.shift(split) / "test.json"

    def grid_cell(self, n: int, capacity: str) -> Path:
        return self.block("grid") / f"n{n}" / slug(capacity)

    def grid_record(self, n: int) -> Path:
        return self.block("grid") / f"n{n}" / "test.json"

    @property
    def length_record(self) -> Path:
        return self.block(LENGTH_BLOCK) / "length.json"


def rest_stages(ctx: RunContext, layout: RestLayout, prefix: str) -> list[Stage]:
    """One seed's stages of every task block, then the output-length stage on the long-answer block."""
    s, est = ctx.settings, Estimates(ctx.settings)
    stages: list[Stage] = []

    def add(name: str, outputs: tuple[Path, ...], run, minutes: float, deps: tuple[str, ...] = ()) -> str:
        stages.append(Stage(f"{prefix}{name}", outputs, run, tuple(f"{prefix}{d}" for d in deps), (), minutes))
        return name

    for block in BLOCKS:
        b = block.name
        folder = layout.block(b)
        epochs = s.finetune_epochs * block.epochs_scale
        add(f"finetune {b}", (layout.finetune_record(b),),
            lambda block=block, folder=folder, epochs=epochs: cli_stages.finetune(
                ctx, SYNTHETIC / "finetune.yaml", folder / "finetune",
                (*block.overrides(s), "--trainer.max_epochs", str(epochs),
                 "--trainer.check_val_every_n_epoch", str(epochs)), block.backbone(s)),
            est.finetune(epochs) * block.train_cost)
        add(f"imitation {b}", (layout.imitation_record(b),),
            lambda block=block, folder=folder: cli_stages.imitation(
                ctx, folder / "imitation", layout.backbone(block.name), _n(layout, block.name),
                s.task_imitation_epochs, block.overrides(s)),
            est.imitation(s.task_imitation_epochs) * block.train_cost, deps=(f"finetune {b}",))
        for split in block.splits:
            label = f"test {b}" + (f" {split}" if split else "")
            add(label, (layout.eval_record(b, split),),
                lambda block=block, split=split: run_task_eval(
                    layout.backbone(block.name), layout.checkpoint(block.name), s, ctx.seed, block.data(s, split),
                    block.max_new_tokens(s), layout.eval_record(block.name, split), block.draft_verify),
                est.test(5 if block.draft_verify else 4) * block.test_cost,
                deps=(f"imitation {b}",))
        add(f"layerskip {b}", (layout.layerskip(b) / "stage.json",),
            lambda block=block, epochs=s.task_layerskip_epochs: cli_stages.finetune(
                ctx, SYNTHETIC / "layerskip.yaml", layout.layerskip(block.name),
                (*block.overrides(s), "--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch",
                 str(epochs)), str(layout.backbone(block.name)), exit_rule=LAYERSKIP_EXIT_RULE),
            est.finetune(s.task_layerskip_epochs) * block.train_cost * LAYERSKIP_COST, deps=(f"finetune {b}",))
        for split in block.splits:
            label = f"test {b} layerskip" + (f" {split}" if split else "")
            add(label, (layout.layerskip_record(b, split),),
                lambda block=block, split=split: run_layerskip_eval(
                    layout.layerskip(block.name) / "backbone", _layerskip_n(layout, block.name), s,
                    block.data(s, split), block.max_new_tokens(s), layout.layerskip_record(block.name, split)),
                est.test(2) * block.test_cost, deps=(f"layerskip {b}",))
    zs = next(b for b in BLOCKS if b.name == "zeroshot")
    for split in SHIFTED:
        folder = layout.shift(split)
        shifted = ("--data.init_args.train_domain", split, "--data.init_args.num_train", str(s.shift_images))
        add(f"shift finetune {split}", (folder / "imitation" / "stage.json",),
            lambda split=split, folder=folder, shifted=shifted: cli_stages.shifted_imitation(
                ctx, folder / "imitation", layout.backbone(zs.name), _n(layout, zs.name), layout.checkpoint(zs.name),
                s.shift_epochs, (*zs.overrides(s), "--data.init_args.test_domain", split, *shifted)),
            est.imitation(s.shift_epochs) * zs.train_cost * s.shift_images / max(s.num_train, 1) * 3,
            deps=(f"imitation {zs.name}",))
        add(f"shift test {split}", (layout.shift_record(split),),
            lambda split=split, folder=folder: run_task_eval(
                layout.backbone(zs.name), folder / "imitation" / "checkpoints" / "last.ckpt", s, ctx.seed,
                zs.data(s, split), zs.max_new_tokens(s), layout.shift_record(split)),
            est.test(4), deps=(f"shift finetune {split}",))
    long = next(b for b in BLOCKS if b.name == LENGTH_BLOCK)
    for n in s.grid_ns:
        cells = []
        for cap, overrides in CAPACITIES.items():
            folder = layout.grid_cell(n, cap)
            cells.append(add(f"grid n={n} {cap}", (folder / "stage.json",),
                             lambda n=n, folder=folder, overrides=overrides: cli_stages.imitation(
                                 ctx, folder, layout.backbone(long.name), n, s.grid_epochs,
                                 (*long.overrides(s), *overrides)),
                             est.imitation(s.grid_epochs) * long.train_cost, deps=(f"finetune {long.name}",)))
        add(f"grid test n={n}", (layout.grid_record(n),),
            lambda n=n: run_grid_test(
                layout.backbone(long.name), {cap: layout.grid_cell(n, cap) / "checkpoints" / "last.ckpt"
                                             for cap in CAPACITIES}, n, s, long.data(s, None),
                long.max_new_tokens(s), layout.grid_record(n)),
            est.decode(3 + 2 * len(CAPACITIES)) * s.grid_images / max(s.num_test, 1) * long.test_cost, deps=cells)
    if s.judge_url is not None:
        add(f"judge {long.name}", (layout.judge_record(long.name),),
            lambda: run_judge([layout.eval_record(long.name, None), layout.layerskip_record(long.name, None)],
                              OpenAICompatibleJudge(s.judge_url, s.judge_model, s.judge_key_env), s.judge_model,
                              layout.judge_record(long.name)),
            est.decode(2), deps=(f"test {long.name}", f"test {long.name} layerskip"))
    add("output length", (layout.length_record,),
        lambda: run_length_eval(layout.backbone(long.name), layout.checkpoint(long.name), s, long.data(s, None),
                                layout.length_record),
        est.decode(2) * s.length_images / max(s.num_test, 1) * sum(s.length_caps) / s.max_new_tokens,
        deps=(f"imitation {long.name}",))
    return stages


def _n(layout: RestLayout, block: str) -> int:
    return int(need_record(layout.finetune_record(block))["n"])


def _layerskip_n(layout: RestLayout, block: str) -> int:
    return int(need_record(layout.layerskip(block) / "stage.json")["n"])
