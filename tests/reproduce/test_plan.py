"""The stage runner, with fake stages: skipping, resuming, atomic outputs, progress lines, timings."""

import json
import os
import re

import pytest

from lightning_ssd.files import atomic_open, atomic_write_text
from lightning_ssd.reproduce.plan import (
    PlanFailed,
    Stage,
    check_plan,
    pending_minutes,
    record_timing,
    run_plan,
)


class Counter:
    """Fake stage bodies that write their output and count their calls; `fail` names stages that raise once."""

    def __init__(self, tmp_path, fail=()):
        self.tmp_path, self.calls, self.fail = tmp_path, [], set(fail)

    def out(self, name):
        return self.tmp_path / f"{name}.txt"

    def stage(self, name, deps=(), **kwargs):
        def run():
            self.calls.append(name)
            if name in self.fail:
                self.fail.discard(name)
                raise RuntimeError(f"{name} broke")
            atomic_write_text(self.out(name), name)

        return Stage(name, (self.out(name),), run, deps, **kwargs)


def _run(stages, tmp_path):
    lines = []
    try:
        run_plan(stages, tmp_path / "timings.json", log=lines.append)
    except PlanFailed as err:
        return lines, err
    return lines, None


def test_a_second_run_skips_every_done_stage(tmp_path):
    c = Counter(tmp_path)
    stages = [c.stage("a"), c.stage("b", ("a",))]
    _run(stages, tmp_path)
    assert pending_minutes(stages) == 0
    lines, err = _run(stages, tmp_path)
    assert err is None and c.calls == ["a", "b"]
    assert lines == ["[1/2] a ... skipped (outputs exist)", "[2/2] b ... skipped (outputs exist)"]


def test_progress_lines_and_timings(tmp_path):
    c = Counter(tmp_path)
    lines, _ = _run([c.stage("fine-tune", estimate_min=2.0), c.stage("imitation ce_only")], tmp_path)
    assert lines[0] == "[1/2] fine-tune ..."
    assert re.fullmatch(r"\[1/2\] fine-tune \.\.\. done in \d+ s", lines[1])
    assert lines[2] == "[2/2] imitation ce_only ..."
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(timings) == {"fine-tune", "imitation ce_only"}
    assert timings["fine-tune"]["status"] == "done" and timings["fine-tune"]["estimate_min"] == 2.0
    assert timings["fine-tune"]["seconds"] >= 0


def test_a_stage_marked_always_reruns_though_its_outputs_are_newer_than_its_inputs(tmp_path):
    c = Counter(tmp_path)
    stages = [c.stage("a"), c.stage("report", ("a",), always=True)]
    _run(stages, tmp_path)
    lines, err = _run(stages, tmp_path)
    assert err is None and c.calls == ["a", "report", "report"]
    assert lines[0].endswith("skipped (outputs exist)") and lines[1] == "[2/2] report ..."


def test_a_run_beside_another_keeps_the_times_the_other_wrote(tmp_path):
    """Two seeds run as two processes share timings.json: each stage's time is merged into the file as it is then."""
    c = Counter(tmp_path)
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"seed1 finetune": {"seconds": 60.0, "status": "done"}}))

    def other_process_finishes_a_stage():
        record_timing(path, "seed1 imitation", {"seconds": 30.0, "status": "done"})
        atomic_write_text(c.out("b"), "b")

    _run([c.stage("seed0 a"), Stage("seed0 b", (c.out("b"),), other_process_finishes_a_stage)], tmp_path)
    assert set(json.loads(path.read_text())) == {"seed1 finetune", "seed1 imitation", "seed0 a", "seed0 b"}


def test_resumes_after_a_stage_that_raised(tmp_path):
    c = Counter(tmp_path, fail={"b"})
    stages = [c.stage("a"), c.stage("b", ("a",)), c.stage("c", ("b",)), c.stage("d", ("a",))]
    lines, err = _run(stages, tmp_path)
    assert isinstance(err, PlanFailed) and set(err.failed) == {"b"} and "b broke" in str(err)
    assert c.calls == ["a", "b", "d"]  # c needs b; d does not, and still runs
    assert lines[3].startswith("[2/4] b ... failed after") and lines[4] == "[3/4] c ... not run (needs b)"
    assert json.loads((tmp_path / "timings.json").read_text())["b"]["status"] == "failed"
    lines, err = _run(stages, tmp_path)
    assert err is None and c.calls == ["a", "b", "d", "b", "c"]
    assert lines[0] == "[1/4] a ... skipped (outputs exist)" and lines[-1] == "[4/4] d ... skipped (outputs exist)"


def test_a_stage_that_writes_part_of_its_outputs_is_not_done(tmp_path):
    half = tmp_path / "half.txt"

    def run():
        atomic_write_text(half, "first output")
        raise RuntimeError("interrupted before the second output")

    stage = Stage("two outputs", (half, tmp_path / "second.txt"), run)
    _, err = _run([stage], tmp_path)
    assert err is not None and half.exists()
    lines, err = _run([stage], tmp_path)
    assert lines[0] == "[1/1] two outputs ..."  # not taken as done: it runs again


def test_a_stage_that_returns_without_its_outputs_fails(tmp_path):
    _, err = _run([Stage("lazy", (tmp_path / "never.txt",), lambda: None)], tmp_path)
    assert "finished without writing" in err.failed["lazy"]


def test_an_interrupted_write_leaves_no_file(tmp_path):
    path = tmp_path / "figure.png"

    with pytest.raises(KeyboardInterrupt), atomic_open(path, "wb") as f:
        f.write(b"half a png")
        raise KeyboardInterrupt  # as Ctrl-C inside savefig
    assert not path.exists() and os.listdir(tmp_path) == []


def test_a_newer_dependency_makes_a_stage_run_again(tmp_path):
    c = Counter(tmp_path)
    stages = [c.stage("a"), c.stage("b", ("a",))]
    _run(stages, tmp_path)
    stat = c.out("b").stat()
    os.utime(c.out("a"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a redone after b
    lines, _ = _run(stages, tmp_path)
    assert lines[0].endswith("skipped (outputs exist)") and c.calls == ["a", "b", "b"]


def test_an_unavailable_stage_is_skipped_with_its_reason(tmp_path):
    c = Counter(tmp_path)
    stages = [c.stage("hook", unavailable=lambda: "needs experiments/synthetic/layerskip.yaml"),
              c.stage("hook test", ("hook",)),
              Stage("report", (c.out("report"),), lambda: atomic_write_text(c.out("report"), "r"), (), ("hook",))]
    lines, err = _run(stages, tmp_path)
    assert err is None and c.calls == []
    assert lines[0] == "[1/3] hook ... skipped (needs experiments/synthetic/layerskip.yaml)"
    assert lines[1] == "[2/3] hook test ... not run (needs hook)"
    assert c.out("report").exists()


def test_plan_errors_name_the_stage():
    run = lambda: None  # noqa: E731
    with pytest.raises(ValueError, match="two stages are named 'a'"):
        check_plan([Stage("a", (), run), Stage("a", (), run)])
    with pytest.raises(ValueError, match="'a' depends on \\['b'\\]"):
        check_plan([Stage("a", (), run, ("b",)), Stage("b", (), run)])
