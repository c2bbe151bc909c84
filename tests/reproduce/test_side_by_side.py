"""Stages side by side: a seed's stages dealt into lanes that share no dependency, at most `jobs` processes at once,
each one's output in its log, exit codes in order."""

import re
import sys

import pytest

from lightning_ssd.reproduce.plan import Stage, check_plan
from lightning_ssd.reproduce.side_by_side import lanes, run_side_by_side


def _command(tmp_path, name, code=0):
    """A process that appends its start and end times to a shared file, prints its name and exits with `code`."""
    body = (f"import sys, time; f = open({str(tmp_path / 'times')!r}, 'a'); f.write(f'{{time.time()}} +1\\n'); "
            f"f.flush(); time.sleep(0.3); print({name!r}); f.write(f'{{time.time()}} -1\\n'); sys.exit({code})")
    return [sys.executable, "-c", body]


def _most_at_once(path):
    events = sorted((float(t), int(d)) for t, d in (line.split() for line in path.read_text().splitlines()))
    live = most = 0
    for _, change in events:
        live += change
        most = max(most, live)
    return most


@pytest.mark.parametrize("jobs", [1, 2])
def test_at_most_jobs_run_at_once_and_each_writes_its_own_log(tmp_path, jobs):
    logs = [tmp_path / f"seed{i}.log" for i in range(3)]
    codes = run_side_by_side([_command(tmp_path, f"s{i}", code=i == 1) for i in range(3)], logs, jobs, poll_s=0.05)
    assert codes == [0, 1, 0]
    assert [log.read_text().strip() for log in logs] == ["s0", "s1", "s2"]
    assert _most_at_once(tmp_path / "times") == jobs


def test_jobs_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--jobs"):
        run_side_by_side([], [], 0)


def _stage(name, minutes, *deps, optional=()):
    return Stage(name, (), lambda: None, deps, optional, minutes)


def test_lanes_keep_each_chain_whole_balance_the_estimates_and_keep_the_plan_order():
    plan = [_stage("a1", 10), _stage("b1", 6), _stage("a2", 5, "a1"), _stage("c1", 4), _stage("b2", 6, "b1"),
            _stage("d1", 3), _stage("a3", 1, "a1", optional=("c1",)), _stage("e", 2)]
    dealt = lanes(plan, 2)
    names = [[s.name for s in lane] for lane in dealt]
    # chains: a1-a2-a3 with c1 (an optional dependency), 20 min; b1-b2, 12; d1, 3; e, 2
    assert names == [["a1", "a2", "c1", "a3"], ["b1", "b2", "d1", "e"]]
    for lane in dealt:
        check_plan(lane)  # each lane is a plan of its own: every dependency inside it, earlier
    assert [[s.name for s in lane] for lane in lanes(plan, 1)] == [[s.name for s in plan]]
    assert len(lanes(plan, 9)) == 4  # no empty lanes
    with pytest.raises(ValueError, match="--jobs"):
        lanes(plan, 0)


def test_two_quick_seeds_side_by_side_then_one_report_over_both(tmp_path, capsys):
    from lightning_ssd.__main__ import main

    root, out = tmp_path / "runs", tmp_path / "out"
    main(["reproduce", "--quick", "--parts", "rest", "--seeds", "0", "1", "--jobs", "2", "--root", str(root),
          "--out", str(out)])
    printed = capsys.readouterr().out
    assert "4 lanes of seeds 0, 1 side by side, 2 at a time, 1 thread(s) each" in printed
    for seed in (0, 1):  # each seed's two lanes ran its own stages, each block's chain in one of them, and no report
        logs = [(root / f"seed{seed}_lane{k}.log").read_text() for k in (0, 1)]
        for block in ("dialog", "zeroshot", "vqa", "long"):
            assert sum(f"seed{seed} finetune {block} ... done in" in log for log in logs) == 1
        assert all(f"seed{1 - seed} " not in log and "report rest ..." not in log for log in logs)
    assert re.search(r"seed1 finetune dialog \.\.\. skipped \(outputs exist\)", printed)
    assert "report rest ... done in" in printed and "seed 0, 1; cells: median" in (out / "table2.md").read_text()


def test_a_lane_beyond_the_plan_is_refused_by_name(tmp_path, capsys):
    from lightning_ssd.__main__ import main

    with pytest.raises(SystemExit):
        main(["reproduce", "--quick", "--parts", "rest", "--seeds", "0", "--jobs", "2", "--lane", "2", "--no-report",
              "--root", str(tmp_path / "runs")])
    assert "--lane 2: this plan has 2 lane(s) at --jobs 2" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "seed0").exists()
