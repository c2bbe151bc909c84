"""The reproduction as a plan of stages, per seed: fine-tune once, then every table row and figure run on it.

Stage order per seed: fine-tune; Table 1 (imitation + test for CE, +CS, +CS+KD; Draft & Verify; the LayerSkip and
Kangaroo hooks); Table 5 (the other fusions); Table 6 (confidences of every layer, then one stage per lambda);
figure 9/6's sweep; the joint / frozen / mixed runs of figures 1, 7, 8. The report comes last, once for all seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lightning_ssd.configs import EXPERIMENTS
from lightning_ssd.reproduce import cli_stages
from lightning_ssd.reproduce.cli_stages import RunContext
from lightning_ssd.reproduce.draft_verify import run_draft_verify
from lightning_ssd.reproduce.exit_layers import choose_n, measure_confidences
from lightning_ssd.reproduce.layout import FIGURE_RUNS, LOSS_ROWS, MAIN_ROW, Layout
from lightning_ssd.reproduce.plan import Stage, atomic_write_json
from lightning_ssd.reproduce.results import need_record, read_record
from lightning_ssd.reproduce.settings import Estimates
from lightning_ssd.reproduce.sweep import run_sweep

SYNTHETIC = EXPERIMENTS / "synthetic"
HOOK_CONFIGS = {"layerskip": SYNTHETIC / "layerskip.yaml", "kangaroo": SYNTHETIC / "kangaroo.yaml"}
LAYERSKIP_TEST = SYNTHETIC / "layerskip_ssd_test.yaml"  # its own test config if it exists; else finetune.yaml's
ALL_MODES = ("full", "draft", "draft_imit", "ssd")
ROW_MODES = ("full", "draft_imit", "ssd")  # "draft" (no imitation) does not depend on the row: the main row has it


def missing_hook(name: str) -> str | None:
    """Why a hook row cannot run now (its config does not exist yet), or None."""
    config = HOOK_CONFIGS[name]
    return None if config.exists() else f"needs {config.relative_to(EXPERIMENTS.parent)}"


def _n(layout: Layout) -> int:
    return int(need_record(layout.finetune_record)["n"])


class SeedPlan:
    """Builds one seed's stages; `prefix` ("seed<seed> ") tells seeds apart in stage names and timings."""

    def __init__(self, ctx: RunContext, layout: Layout, prefix: str) -> None:
        self.ctx, self.layout, self.prefix = ctx, layout, prefix
        self.est = Estimates(ctx.settings)
        self.stages: list[Stage] = []

    def add(self, name: str, outputs: tuple[Path, ...], run: Callable[[], None], minutes: float,
            deps: tuple[str, ...] = ("finetune",), unavailable: Callable[[], str | None] | None = None) -> str:
        full = f"{self.prefix}{name}"
        self.stages.append(Stage(full, outputs, run, tuple(f"{self.prefix}{d}" for d in deps), (), minutes,
                                 unavailable))
        return full

    def row(self, table: str, name: str, overrides: tuple[str, ...], epochs: int, modes: tuple[str, ...],
            config: Path = EXPERIMENTS / "synthetic.yaml", unavailable: Callable[[], str | None] | None = None,
            label: str | None = None) -> None:
        """An imitation stage and its test stage, named after `label` (default: the row's folder name)."""
        lay, ctx = self.layout, self.ctx
        folder, label = lay.row(table, name), label or name
        fit = self.add(f"imitation {label}", (lay.imitation_record(table, name),),
                       lambda: cli_stages.imitation(ctx, folder / "imitation", lay.backbone, _n(lay), epochs,
                                                    overrides, config), self.est.imitation(epochs),
                       unavailable=unavailable)
        test_config = config if config != EXPERIMENTS / "synthetic.yaml" else SYNTHETIC / "ssd_test.yaml"
        self.add(f"test {label}", (lay.test_metrics(table, name),),
                 lambda: cli_stages.test(ctx, folder / "test", lay.backbone, _n(lay), modes,
                                         lay.checkpoint(table, name), test_config),
                 self.est.test(len(modes)), deps=(fit.removeprefix(self.prefix),), unavailable=unavailable)

    def build(self) -> list[Stage]:
        s, lay, ctx = self.ctx.settings, self.layout, self.ctx
        self.add("finetune", (lay.finetune_record,),
                 lambda: cli_stages.finetune(ctx, SYNTHETIC / "finetune.yaml", lay.finetune), self.est.finetune(),
                 deps=())
        for _, folder, overrides in LOSS_ROWS:
            modes = ALL_MODES if folder == MAIN_ROW else ROW_MODES
            self.row("table1", folder, overrides, s.imitation_epochs, modes)
        self.add("draft_verify", (lay.draft_verify,),
                 lambda: run_draft_verify(lay.backbone, s, ctx.seed, lay.draft_verify), self.est.draft_verify())
        self._layerskip()
        self.row("table1", "kangaroo", (), s.imitation_epochs, ROW_MODES, HOOK_CONFIGS["kangaroo"],
                 lambda: missing_hook("kangaroo"))
        for fusion in ("average", "attention"):
            self.row("table5", fusion, ("--model.init_args.fusion", fusion), s.imitation_epochs, ROW_MODES,
                     label=f"fusion={fusion}")
        self.add("exit-layer confidences", (lay.confidences,),
                 lambda: measure_confidences(lay.backbone, s, lay.confidences), self.est.decode(1))
        for lam in s.lambdas:
            self.add(f"table6 lambda={lam}", (lay.lambda_record(lam),), lambda lam=lam: self._lambda_row(lam),
                     self.est.imitation(s.ablation_epochs) + self.est.test(3), deps=("exit-layer confidences",))
        self.add("table6 speedup rule", (lay.speedup_rule_record,), self._speedup_row,
                 self.est.imitation(s.ablation_epochs) + self.est.test(3), deps=("exit-layer confidences",))
        self.add("sweep d", (lay.sweep,),
                 lambda: run_sweep(lay.backbone, lay.checkpoint("table1", MAIN_ROW), s, lay.sweep),
                 self.est.decode(len(s.sweep_drafts) + 2), deps=(f"imitation {MAIN_ROW}",))
        joint = {"frozen": 0, "joint": s.figure_epochs, "mixed": s.mixed_joint_epochs}
        for run in FIGURE_RUNS:
            minutes = self.est.joint(joint[run]) + self.est.imitation(s.figure_epochs - joint[run]) + 0.15 * (
                s.figure_epochs)  # validation with two decoders after every epoch
            self.add(f"figure run {run}", (lay.history(run),),
                     lambda run=run: cli_stages.mixed(ctx, lay.history(run).parent, lay.backbone, _n(lay),
                                                      joint[run]), minutes)
        return self.stages

    def _layerskip(self) -> None:
        lay, ctx = self.layout, self.ctx
        folder = lay.row("table1", "layerskip")
        test_config = LAYERSKIP_TEST if LAYERSKIP_TEST.exists() else SYNTHETIC / "finetune.yaml"
        fit = self.add("layerskip finetune", (lay.layerskip_record,),
                       lambda: cli_stages.finetune(ctx, HOOK_CONFIGS["layerskip"], folder / "finetune"),
                       self.est.finetune() * 1.3, unavailable=lambda: missing_hook("layerskip"))
        self.add("layerskip test", (lay.test_metrics("table1", "layerskip"),),
                 lambda: cli_stages.test(ctx, folder / "test", folder / "finetune" / "backbone", _n(lay),
                                         ("full", "draft", "ssd"), config=test_config),
                 self.est.test(3), deps=("finetune", fit.removeprefix(self.prefix)),
                 unavailable=lambda: missing_hook("layerskip"))

    def _lambda_row(self, lam: str) -> None:
        """n for `lam` by the paper's reward; its Table 6 run."""
        conf = need_record(self.layout.confidences)
        n = choose_n(conf["mean_confidence"], conf["L"], lam)
        self._table6_run(n, self.layout.lambda_record(lam), {"lambda": lam})

    def _speedup_row(self) -> None:
        """n by the speedup rule (the cost model at the measured exit agreements); its Table 6 run."""
        conf = need_record(self.layout.confidences)
        rule = conf["speedup_rule"]
        self._table6_run(rule["n"], self.layout.speedup_rule_record, {"rule": "speedup", "d": rule["d"]})

    def _table6_run(self, n: int, record: Path, about: dict) -> None:
        """The imitation run at n and its test, unless another Table 6 row's stage made them; then `record`."""
        lay, ctx, s = self.layout, self.ctx, self.ctx.settings
        name = f"n{n}"
        metrics = lay.test_metrics("table6", name)
        if read_record(metrics) is None:
            folder = lay.row("table6", name)
            cli_stages.imitation(ctx, folder / "imitation", lay.backbone, n, s.ablation_epochs)
            cli_stages.test(ctx, folder / "test", lay.backbone, n, ROW_MODES, lay.checkpoint("table6", name))
        atomic_write_json(record, {**about, "n": n, "metrics": str(metrics)})


PARTS: tuple[str, ...] = ("tables", "rest")  # Tables 1, 5, 6 and figures; the rest of the paper (rest_stages)


def build_plan(settings, root: Path, out: Path, command: str, parts: tuple[str, ...] = PARTS,
               reports: bool = True) -> list[Stage]:
    """Every seed's stages of `parts`, then their reports: "tables" ends with the report of Tables 1, 5 and 6 (which
    reads the hook rows if they ran), "rest" with the report of Tables 2, 3, 4, A.2 and the output length.
    `reports=False` leaves the reports out (one seed's process of `--jobs`: the report waits for every seed)."""
    from lightning_ssd.reproduce.context import ReportContext
    from lightning_ssd.reproduce.report import REPORT_FILES, write_report
    from lightning_ssd.reproduce.rest_report import REST_FILES, write_rest_report
    from lightning_ssd.reproduce.rest_stages import RestLayout, rest_stages

    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"--parts: {unknown or 'none given'}; choose from {', '.join(PARTS)}")
    fragments = root / "fragments"
    stages, rest, layouts = [], [], []
    for seed in settings.seeds:
        layout = Layout(root, seed)
        prefix = f"seed{seed} "  # names are timings.json's keys: a seed run alone times under the same ones
        ctx = RunContext(settings, seed, layout.folder, fragments)
        if "tables" in parts:
            stages += SeedPlan(ctx, layout, prefix).build()
        if "rest" in parts:
            rest += rest_stages(ctx, RestLayout(layout.folder), prefix)
        layouts.append(layout)
    hooks = tuple(s.name for s in stages if s.unavailable is not None)

    def report() -> None:
        missing = {name: why for name in HOOK_CONFIGS if (why := missing_hook(name))}
        write_report(ReportContext(settings, tuple(layouts), out, missing, command, root / "timings.json"))

    def rest_report() -> None:
        write_rest_report(ReportContext(settings, tuple(layouts), out, {}, command, root / "timings.json"))

    plan = list(stages)
    if not reports:
        return plan + rest
    if rest:
        plan += rest
        plan.append(Stage("report rest", tuple(out / f for f in REST_FILES), rest_report,
                          tuple(s.name for s in rest), (), 0.1, always=True))
    if stages:
        required = tuple(s.name for s in stages if s.name not in hooks)
        optional = (*hooks, "report rest") if rest else hooks
        plan.append(Stage("report", tuple(out / f for f in REPORT_FILES), report, required, optional, 0.1,
                          always=True))
    return plan
