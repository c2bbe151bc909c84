"""End to end: nas/search.py runs a small NNI experiment in a private network namespace, HOME in a temp folder.

Three grid points, two that train and one whose norm value makes the trial raise: the two report final results,
the third is FAILED and the search still reaches DONE, exports the best trial, stops NNI and leaves no process.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_ssd.nas.export import RECORD_FILE

REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "num_linear": {"_type": "choice", "_value": [{"_name": 1}]},
    "norm": {"_type": "choice", "_value": ["pre", "post", "sideways"]},
    "fusion": {"_type": "choice", "_value": ["average"]},
}
TRIAL_FLAGS = ["--backbone", "tiny-llava", "--n", "1", "--draft", "3", "--num-train", "4", "--num-val", "2",
               "--batch-size", "4", "--epochs", "1", "--max-new-tokens", "6", "--warmup-steps", "1"]


def netns_available() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def processes_mentioning(marker: str) -> list[int]:
    """Live processes other than this one whose environment names `marker` (NNI's manager and trials inherit
    HOME from search.py)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def stop(proc: subprocess.Popen, marker: str) -> None:
    """If the test failed midway: SIGTERM makes search.py stop NNI and its trials; whatever is still left of the
    processes this test started (NNI's manager runs in its own process group) is killed by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in processes_mentioning(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not netns_available(), reason="needs `unshare -n` (root) to confine NNI's web server")
def test_search_runs_trials_survives_a_crash_and_cleans_up(tmp_path):
    home, exps, best = tmp_path / "home", tmp_path / "exps", tmp_path / "best.yaml"
    home.mkdir()
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    search = [sys.executable, str(REPO / "nas" / "search.py"), "run", "--search-space", str(space),
              "--tuner", "GridSearch", "--max-trials", "3", "--experiment-dir", str(exps), "--port", "8080",
              "--timeout", "150", "-o", str(best), *TRIAL_FLAGS]
    inner = "ip link set lo up && exec " + " ".join(f"'{a}'" for a in search)
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", inner], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=200)
        left = processes_mentioning(str(home))
    finally:
        stop(proc, str(home))
    assert proc.returncode == 0, out
    assert "experiment DONE" in out

    (folder,) = [p for p in exps.iterdir() if p.name != "_latest"]
    trials = json.loads((folder / "search_summary.json").read_text())
    by_norm = {t["parameters"]["norm"]: t for t in trials}
    assert sorted(by_norm) == ["post", "pre", "sideways"]
    for norm in ("pre", "post"):
        assert by_norm[norm]["status"] == "SUCCEEDED"
        assert by_norm[norm]["final"]["default"] > 0
    failed = by_norm["sideways"]
    assert failed["status"] == "FAILED" and failed["final"] is None
    stderr = next(folder.rglob(f"{failed['trial_id']}/trial.stderr")).read_text()
    assert "imitation norm must be 'pre', 'post' or 'none', got 'sideways'" in stderr

    # the exported fragment is the best finished trial
    winner = max((by_norm[n] for n in ("pre", "post")), key=lambda t: t["final"]["default"])
    init_args = yaml.safe_load(best.read_text())["model"]["init_args"]
    assert init_args["imitation"]["init_args"]["norm"] == winner["parameters"]["norm"]
    assert len(list(folder.rglob(RECORD_FILE))) == 2

    # export finds the stopped experiment through NNI's list and writes the same fragment
    again = tmp_path / "again.yaml"
    subprocess.run([sys.executable, str(REPO / "nas" / "search.py"), "export", folder.name, "-o", str(again)],
                   env=env, check=True, capture_output=True, timeout=120)
    assert yaml.safe_load(again.read_text()) == yaml.safe_load(best.read_text())

    # each finished trial's TensorBoard log is where the web UI's TensorBoard looks for it
    for norm in ("pre", "post"):
        ui_dir = folder / "trials" / by_norm[norm]["trial_id"] / "output" / "tensorboard"
        assert list(ui_dir.resolve().glob("events.out.tfevents.*"))

    # NNI's manifest went to the temp HOME, the experiment is stopped, and nothing is left running
    manifest = json.loads((home / "nni-experiments" / ".experiment").read_text())
    assert manifest[folder.name]["status"] == "STOPPED"
    assert left == []
