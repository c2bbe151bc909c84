"""What the reproduction runs: backbone, sizes, epochs, the values swept, and the time each stage is expected to take.

The defaults are the embedded default's (`python -m lightning_ssd demo`): base-llava fine-tuned from random
initialisation for 2 epochs on 2000 synthetic images, imitation for 12 epochs, 200 test images, d = 6. `QUICK` is a
smoke-test preset on tiny backbones (a test runs each part of the plan with it in about a minute).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lightning_ssd.models.components.exit_layer import check_rule

# Wall times of the embedded default's stages measured on a 2-core CPU (FACTS.md, results/demo_seed0_results.md), at
# 2000 training / 200 test images: the basis of every estimate below.
DEMO_FINETUNE_MIN = 5.5  # 2 epochs
DEMO_IMITATION_MIN = 3.1  # 12 epochs, validated once
DEMO_TEST_MIN = 0.5  # 4 decoding modes with METEOR, batches of 50
TEST_MIN_ONE_BY_ONE = 1.1  # the same test with each image decoded alone (reproduce's test stage, measured)
DEMO_NUM_TRAIN, DEMO_NUM_TEST, DEMO_IMITATION_EPOCHS = 2000, 200, 12


def lambda_value(label: str, num_layers: int) -> float:
    """The cost per layer of a Table 6 label: "1/L" -> 1/L, "1/10" -> 0.1, "0.05" -> 0.05."""
    text = label.strip()
    try:
        if text.upper() == "1/L":
            return 1.0 / num_layers
        if "/" in text:
            num, den = text.split("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise ValueError(f"--lambdas: {label!r} is not a cost per layer; write 1/L, a fraction such as 1/10, or a "
                         "number") from err


@dataclass(frozen=True)
class Settings:
    """Sizes and values of one reproduction.

    Attributes:
        backbone: the preset fine-tuned from random initialisation (shared by every row, as in the paper).
        finetune_epochs: epochs of stage 1 (also of the LayerSkip fine-tune).
        imitation_epochs: imitation epochs of Table 1's rows and Table 5's.
        ablation_epochs: imitation epochs of Table 6's rows (one run per distinct n).
        figure_epochs: epochs of the joint / frozen / mixed runs of figures 1, 7 and 8.
        mixed_joint_epochs: joint epochs of the mixed run (figure 8) before its backbone is frozen.
        num_train, num_val, num_test: images of the embedded synthetic benchmark's splits.
        batch_size, eval_batch_size: None keeps the configs' own (training and validation batches).
        test_batch_size: the test split's decoding batch (Tables 1, 5 and 6, figures 6 and 9). 1 decodes each image
            alone, so Spd. is the per-image latency ratio the paper's per-token times are; a larger batch measures
            batched throughput, which verification over B x (d + 1) tokens erodes on a CPU.
        max_new_tokens: generation length cap at validation and test.
        draft: d of every SSD test (Tables 1, 5, 6) and of Draft & Verify's drafting budget.
        sweep_drafts: the values of d of figure 9.
        lambdas: the cost-per-layer values of Table 6 ("1/L" or a fraction "1/10").
        exit_rule: how the fine-tuning stages choose Table 1's n: the paper's reward C_l - lambda * l with the
            one-standard-error tie-break ("one_se"), its plain argmax ("argmax"), or the cost model's predicted
            speedup ("speedup", the embedded default's rule since it drafts fastest there). The paper's tables are
            reproduced with the paper's reward; Table 6 shows where each rule puts n.
        dv_trials: TPE trials of the Draft & Verify skip-set search; dv_search_images: validation images it uses.
        dv_threshold: Draft & Verify's starting draft-exiting threshold (adapted as the original does).
        meteor: score METEOR (a JVM start per decoding mode and test).
        seeds: training seeds; each seed's stages go to a folder of their own.
        progress_bar: Lightning's progress bars in the training stages.
        preset: "default" or "quick", for the report.
        t5_backbone: the BLIP-2 Flan-T5 preset of Table 3's analogue (dialog and zero-shot captions).
        llava_backbone: the LLaVA preset of Table 2's analogue (long answers) and Appendix A.2's (VQA).
        task_imitation_epochs: imitation epochs of those tasks' rows (their fine-tunes take `finetune_epochs`).
        task_layerskip_epochs: epochs of each task's LayerSkip row: LayerSkip's recipe continued from the task's
            fine-tuned backbone.
        long_max_new_tokens: generation cap (and target length) of the long answers (the descriptions: 47-63 tokens).
        vqa_max_new_tokens: generation cap of the one-word VQA answers.
        length_caps: the output lengths of the output-length stage (end-of-sequence off).
        length_images: test images decoded at each of `length_caps`, one at a time.
        shift_images: shifted training images of the distribution-shift fine-tune (near and out, each).
        shift_epochs: its epochs, from the in-domain imitation network's weights.
        grid_ns: the exit layers of the size-ratio grid (on the long-answer backbone).
        grid_epochs: imitation epochs of each grid cell.
        grid_images: long-answer test images each grid cell is decoded on.
        judge_url: an OpenAI-compatible chat endpoint that scores Table 2's long answers (None: no judge, the
            columns read needs_judge); judge_model: its model name; judge_key_env: the variable holding its key.
    """

    backbone: str = "base-llava"
    finetune_epochs: int = 2
    imitation_epochs: int = 12
    ablation_epochs: int = 6
    figure_epochs: int = 3
    mixed_joint_epochs: int = 1
    num_train: int = 2000
    num_val: int = 200
    num_test: int = 200
    batch_size: int | None = None
    eval_batch_size: int | None = None
    test_batch_size: int = 1
    max_new_tokens: int = 32
    draft: int = 6
    sweep_drafts: tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12)
    lambdas: tuple[str, ...] = ("1/10", "1/15", "1/L", "1/30", "1/50")
    exit_rule: str = "one_se"
    dv_trials: int = 30
    dv_search_images: int = 16
    dv_threshold: float = 0.8
    meteor: bool = True
    seeds: tuple[int, ...] = (0,)
    progress_bar: bool = True
    preset: str = "default"
    t5_backbone: str = "base-blip2-t5"
    llava_backbone: str = "base-llava"
    task_imitation_epochs: int = 6
    task_layerskip_epochs: int = 1
    long_max_new_tokens: int = 80
    vqa_max_new_tokens: int = 8
    length_caps: tuple[int, ...] = (16, 64, 256)
    length_images: int = 20
    shift_images: int = 300
    shift_epochs: int = 2
    grid_ns: tuple[int, ...] = (1, 2, 4, 8)
    grid_epochs: int = 3
    grid_images: int = 40
    judge_url: str | None = None
    judge_model: str | None = None
    judge_key_env: str = "OPENAI_API_KEY"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")
        if not 0 <= self.mixed_joint_epochs < self.figure_epochs:
            raise ValueError(f"--mixed-joint-epochs must be in [0, --figure-epochs) = [0, {self.figure_epochs}), got "
                             f"{self.mixed_joint_epochs}")
        for lam in self.lambdas:
            lambda_value(lam, 2)  # refuses a malformed value before anything runs
        check_rule(self.exit_rule, "exit_rule")
        if (self.judge_url is None) != (self.judge_model is None):
            raise ValueError("--judge-url and --judge-model go together: give both, or neither")
        if self.judge_url is not None and not self.judge_url.startswith(("http://", "https://")):
            raise ValueError(f"--judge-url {self.judge_url}: must start with http:// or https://")
        if self.test_batch_size < 1:
            raise ValueError(f"--test-batch-size must be >= 1, got {self.test_batch_size}")


QUICK = Settings(
    backbone="tiny-blip2-opt", finetune_epochs=1, imitation_epochs=1, ablation_epochs=1, figure_epochs=2,
    num_train=24, num_val=8, num_test=8, batch_size=8, eval_batch_size=8, test_batch_size=4, max_new_tokens=8,
    sweep_drafts=(1, 2, 4), dv_trials=3, dv_search_images=4, meteor=False, progress_bar=False, preset="quick",
    t5_backbone="tiny-blip2-t5", llava_backbone="tiny-llava", task_imitation_epochs=1, long_max_new_tokens=16,
    vqa_max_new_tokens=4, length_caps=(4, 8, 16), length_images=2,
    shift_images=16, shift_epochs=1, grid_ns=(1, 2), grid_epochs=1, grid_images=4,
)


def with_overrides(base: Settings, **overrides: object) -> Settings:
    """`base` with the given fields replaced (None values are ignored)."""
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Estimates:
    """Expected minutes per kind of stage, scaled from the demo's measured stage times by size and epochs."""

    s: Settings

    @property
    def _train(self) -> float:
        return self.s.num_train / DEMO_NUM_TRAIN

    @property
    def _test(self) -> float:
        return self.s.num_test / DEMO_NUM_TEST

    def finetune(self, epochs: int | None = None) -> float:
        return DEMO_FINETUNE_MIN * self._train * (self.s.finetune_epochs if epochs is None else epochs) / 2

    def imitation(self, epochs: int) -> float:
        # the first epoch runs the frozen backbone and caches its states; later ones train the small network only
        return DEMO_IMITATION_MIN * self._train * (1 + epochs) / (1 + DEMO_IMITATION_EPOCHS)

    @property
    def _test_min(self) -> float:
        return TEST_MIN_ONE_BY_ONE if self.s.test_batch_size == 1 else DEMO_TEST_MIN

    def test(self, modes: int = 4) -> float:
        return self._test_min * self._test * modes / 4

    def decode(self, decoders: int) -> float:
        return self._test_min / 4 * self._test * decoders

    def draft_verify(self) -> float:
        return 0.05 * self.s.dv_trials * self.s.dv_search_images / 16 + self.decode(2)

    def joint(self, epochs: int) -> float:
        """Epochs that train the backbone too: as fine-tuning's."""
        return self.finetune(epochs)
