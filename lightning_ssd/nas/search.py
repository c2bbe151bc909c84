"""Imitation-network architecture search with NNI (paper appendix B): start, resume, view, export.

The logic behind `nas/search.py`, NNI's thin entry point in the repository (the `nas/` folder holds what NNI
runs: `trial.py`, the search space, `config.yml` and the `loopback.js` preload):

    python nas/search.py run                       # TPE over nas/search_space.json, 8 trials, web UI on :8080
    python nas/search.py resume ID --max-trials 16 # continue a stopped search
    python nas/search.py view ID                   # web UI of a stopped search (Ctrl-C ends it)
    python nas/search.py export ID -o best.yaml    # the best trial as a `python -m lightning_ssd fit` config

Every trial is a separate process (`nas/trial.py`): a crash fails that trial only and the search goes on. The
web server is bound to 127.0.0.1 (`nas/loopback.js`; NNI itself would listen on every interface without
authentication). `run` and `resume` poll the REST API until the experiment is DONE, write
`<experiment>/search_summary.json` (every trial's status and final result), stop the experiment, and write the
best trial's config fragment. See nas/README.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from nni.experiment import Experiment
from nni.tools.nnictl.config_utils import Experiments

from lightning_ssd.backbones import PRESETS
from lightning_ssd.nas.export import atomic_write, best_record, write_fragment
from lightning_ssd.nas.space import load_search_space
from lightning_ssd.nas.trial import TrialSettings, settings_parser

NAS_DIR = Path(__file__).resolve().parents[2] / "nas"  # the repository's NNI entry points
LOOPBACK_JS = NAS_DIR / "loopback.js"
TUNERS = ("TPE", "Random", "GridSearch")
SUMMARY_FILE = "search_summary.json"
FRAGMENT_FILE = "best_imitation.yaml"


def confine_to_loopback() -> None:
    """Environment of the NNI manager this process starts: loopback-only web server and TensorBoard, and this
    interpreter's `tensorboard` first on PATH (the web UI runs it by name)."""
    if not LOOPBACK_JS.is_file():
        raise FileNotFoundError(f"{LOOPBACK_JS} is missing: it keeps NNI's web server off the network")
    require = f"--require {json.dumps(str(LOOPBACK_JS))}"
    if require not in os.environ.get("NODE_OPTIONS", ""):
        os.environ["NODE_OPTIONS"] = f"{os.environ.get('NODE_OPTIONS', '')} {require}".strip()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def check_loopback_only(port: int) -> None:
    """Raises if the web server also answers on a non-loopback address of this machine (loopback.js did not take:
    NNI's manager changed, or NODE_OPTIONS is ignored)."""
    for addresses in psutil.net_if_addrs().values():
        for addr in addresses:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            if ipaddress.ip_address(addr.address.split("%")[0]).is_loopback:
                continue
            # getaddrinfo keeps the interface scope of a link-local IPv6 address ("fe80::1%eth0")
            for family, kind, proto, _, sockaddr in socket.getaddrinfo(addr.address, port, type=socket.SOCK_STREAM):
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(1.0)
                    if sock.connect_ex(sockaddr) == 0:
                        raise RuntimeError(f"NNI's web server answers on {addr.address} port {port}, not only on "
                                           f"127.0.0.1: {LOOPBACK_JS} was not applied; the experiment is stopped")


def rest(port: int, api: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{api}", timeout=20) as response:
        return json.load(response)


def wait_until_done(port: int, timeout: float | None, poll: float = 1.0) -> None:
    """Polls `check-status` until DONE. NNI reads NO_MORE_TRIAL while the last trials still run, so that is not
    the end; ERROR (the manager or the tuner failed, not a trial) raises, and so does `timeout` (seconds)."""
    start, seen = time.monotonic(), None
    while True:
        status = rest(port, "check-status")
        if status["status"] != seen:
            seen = status["status"]
            print(f"[nas] {time.monotonic() - start:6.1f}s experiment {seen}", flush=True)
        if seen == "DONE":
            return
        if seen == "ERROR":
            raise RuntimeError(f"NNI experiment failed: {status.get('errors')}; see its log/nnimanager.log and "
                               "log/dispatcher.log")
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"the experiment is not DONE after --timeout {timeout:.0f} s (status {seen})")
        time.sleep(poll)


def final_result(job: dict[str, Any]) -> dict[str, Any] | None:
    """A trial job's final result as reported by the trial (NNI stores it JSON-encoded twice)."""
    data = job.get("finalMetricData")
    if not data:
        return None
    value = json.loads(data[0]["data"])
    return json.loads(value) if isinstance(value, str) else value


def summarize(port: int, folder: Path) -> list[dict[str, Any]]:
    """Every trial's id, sequence number, status, parameters and final result, written to `folder`."""
    trials = [
        {
            "trial_id": job["trialJobId"],
            "sequence": job.get("sequenceId"),
            "status": job["status"],
            "parameters": json.loads(job["hyperParameters"][0])["parameters"] if job.get("hyperParameters") else None,
            "final": final_result(job),
        }
        for job in sorted(rest(port, "trial-jobs"), key=lambda j: j.get("sequenceId", 0))
    ]
    atomic_write(folder / SUMMARY_FILE, json.dumps(trials, indent=2))
    for t in trials:
        score = f"reward {t['final']['default']:.4f}" if t["final"] else "no final result"
        print(f"[nas] trial {t['sequence']} {t['trial_id']}: {t['status']}, {score}", flush=True)
    return trials


def export(folder: Path, output: Path) -> None:
    record = best_record(folder)
    write_fragment(record, output)
    print(f"[nas] best: trial {record.trial_id}, reward {record.score:.4f}, {record.imitation}, fusion "
          f"{record.fusion}\n[nas] config fragment: {output}", flush=True)


def drive(experiment: Experiment, args: argparse.Namespace, start: Callable[[], object]) -> None:
    """Starts (or resumes) `experiment`, waits for DONE, summarizes, stops it, exports the best trial."""
    start()
    folder = Path(experiment.config.canonical_copy().experiment_working_directory) / experiment.id
    print(f"[nas] experiment {experiment.id}: web UI http://127.0.0.1:{args.port} (loopback only), files in "
          f"{folder}", flush=True)
    try:
        check_loopback_only(args.port)
        wait_until_done(args.port, args.timeout)
        summarize(args.port, folder)
    finally:
        experiment.stop()
    export(folder, Path(args.output) if args.output else folder / FRAGMENT_FILE)


def resolve_backbone(backbone: str) -> str:
    """An absolute folder (trials run in nas/) or a preset name; anything else fails here, not in every trial."""
    if Path(backbone).is_dir():
        return str(Path(backbone).resolve())
    if backbone in PRESETS:
        return backbone
    raise SystemExit(f"--backbone {backbone}: neither a folder nor a preset ({', '.join(PRESETS)}). Fine-tune one "
                     "first (python -m lightning_ssd fit --config experiments/synthetic/finetune.yaml writes "
                     "runs/synthetic/finetune/backbone) or name a preset")


def new_experiment(args: argparse.Namespace) -> Experiment:
    values = {k: getattr(args, k) for k in TrialSettings.__dataclass_fields__}
    settings = TrialSettings(**{**values, "backbone": resolve_backbone(args.backbone)})
    experiment = Experiment("local")
    config = experiment.config
    config.experiment_name = "lightning_ssd imitation NAS"
    config.search_space = load_search_space(args.search_space)
    config.trial_code_directory = str(NAS_DIR)
    config.trial_command = shlex.join([sys.executable, "trial.py", *settings.to_args()])
    config.tuner.name = args.tuner
    config.tuner.class_args = {"optimize_mode": "maximize"}
    if args.tuner != "GridSearch":
        config.tuner.class_args["seed"] = args.seed
    config.max_trial_number = args.max_trials
    config.max_trial_duration = args.max_trial_duration
    config.trial_concurrency = args.concurrency
    if args.experiment_dir:
        config.experiment_working_directory = str(Path(args.experiment_dir).resolve())
    return experiment


def stored_experiment(args: argparse.Namespace) -> Experiment:
    experiment = Experiment(None, id=args.experiment_id)
    if not experiment.has_checkpoint():
        raise SystemExit(f"experiment {args.experiment_id} is not in NNI's list ($HOME/nni-experiments/.experiment, "
                         f"HOME={os.environ.get('HOME')}); `nnictl experiment list --all` shows the known ones")
    experiment.load_checkpoint()
    return experiment


def cmd_run(args: argparse.Namespace) -> None:
    experiment = new_experiment(args)
    drive(experiment, args, lambda: experiment.start(args.port))


def cmd_resume(args: argparse.Namespace) -> None:
    experiment = stored_experiment(args)

    def start() -> None:
        experiment.resume(args.port, wait_completion=False)
        if args.max_trials is not None:
            # A resumed experiment keeps its stored budget; a finished one reads DONE until the manager's next pass
            # (every 5 s) sees the new budget, so wait for that before polling for the end.
            experiment.update_max_trial_number(args.max_trials)
            deadline = time.monotonic() + 12.0
            while rest(args.port, "check-status")["status"] == "DONE" and time.monotonic() < deadline:
                time.sleep(0.5)

    drive(experiment, args, start)


def cmd_view(args: argparse.Namespace) -> None:
    experiment = stored_experiment(args)
    experiment.view(args.port, non_blocking=True)
    try:
        check_loopback_only(args.port)
        print(f"[nas] viewing {experiment.id} at http://127.0.0.1:{args.port} (loopback only); Ctrl-C ends",
              flush=True)
        while True:
            time.sleep(3600)
    finally:
        experiment.stop()


def cmd_export(args: argparse.Namespace) -> None:
    root = args.experiment_dir or Experiments().get_all_experiments().get(args.experiment_id, {}).get("logDir")
    folder = Path(root or Path.home() / "nni-experiments") / args.experiment_id
    if not folder.is_dir():
        raise SystemExit(f"no folder {folder}: give the experiment's --experiment-dir (NNI's default is "
                         "~/nni-experiments)")
    export(folder, Path(args.output) if args.output else folder / FRAGMENT_FILE)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", type=int, default=8080, help="web UI / REST port, on 127.0.0.1")
    finishing = argparse.ArgumentParser(add_help=False)
    finishing.add_argument("-o", "--output", default=None,
                           help=f"config fragment of the best trial (default <experiment folder>/{FRAGMENT_FILE})")
    finishing.add_argument("--timeout", type=float, default=None, help="give up (and stop) after this many seconds")

    run = sub.add_parser("run", parents=[common, finishing, settings_parser()], conflict_handler="resolve",
                         help="start a new search (trial flags: see nas/trial.py --help)")
    run.add_argument("--search-space", default=str(NAS_DIR / "search_space.json"), help="NNI search-space JSON")
    run.add_argument("--experiment-dir", default=None, help="NNI's experiment folder (default ~/nni-experiments)")
    run.add_argument("--tuner", choices=TUNERS, default="TPE")
    run.add_argument("--max-trials", type=int, default=8)
    run.add_argument("--concurrency", type=int, default=1, help="trials run at the same time")
    run.add_argument("--max-trial-duration", default="15m", help="NNI stops a trial that runs longer (e.g. 30m, 2h)")
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", parents=[common, finishing], help="continue a stopped search")
    resume.add_argument("experiment_id")
    resume.add_argument("--max-trials", type=int, default=None, help="raise the trial budget")
    resume.set_defaults(func=cmd_resume)

    view = sub.add_parser("view", parents=[common], help="web UI of a stopped search")
    view.add_argument("experiment_id")
    view.set_defaults(func=cmd_view)

    exp = sub.add_parser("export", help="write the best trial's config fragment")
    exp.add_argument("experiment_id")
    exp.add_argument("--experiment-dir", default=None,
                     help="NNI's experiment folder (default: the one NNI's list records, else ~/nni-experiments)")
    exp.add_argument("-o", "--output", default=None,
                     help=f"fragment path (default <experiment folder>/{FRAGMENT_FILE})")
    exp.set_defaults(func=cmd_export)
    return p


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command != "export":
        confine_to_loopback()
        # NNI stops its manager (and the trials) on KeyboardInterrupt; a plain SIGTERM would leave them running.
        signal.signal(signal.SIGTERM, interrupt)
    try:
        args.func(args)
    except KeyboardInterrupt:
        raise SystemExit("[nas] interrupted; the experiment was stopped") from None
