"""Seeds side by side: at most `jobs` processes at once, each one's output in its log, exit codes in order."""

import re
import sys

import pytest

from lightning_ssd.reproduce.side_by_side import run_side_by_side


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


def test_two_quick_seeds_side_by_side_then_one_report_over_both(tmp_path, capsys):
    from lightning_ssd.__main__ import main

    root, out = tmp_path / "runs", tmp_path / "out"
    main(["reproduce", "--quick", "--parts", "rest", "--seeds", "0", "1", "--jobs", "2", "--root", str(root),
          "--out", str(out)])
    printed = capsys.readouterr().out
    assert "seeds 0, 1 side by side, 2 at a time, 1 thread(s) each" in printed
    for seed in (0, 1):  # each seed's process ran its own stages and no report
        log = (root / f"seed{seed}.log").read_text()
        assert f"seed{seed} finetune dialog ... done in" in log and "report rest ..." not in log
    assert re.search(r"seed1 finetune dialog \.\.\. skipped \(outputs exist\)", printed)
    assert "report rest ... done in" in printed and "seed 0, 1; cells: median" in (out / "table2.md").read_text()
