"""TensorBoard's views of a short imitation run, as a person sees them: screenshots from headless Chromium.

    python -m tests.browser.tensorboard_views OUT_DIR [BACKBONE N]

writes a short run's event files (acceptance figures, sample texts, the d sweep; on a tiny preset, or on a trained
BACKBONE folder with exit layer N, whose captions are words rather than a random model's byte pieces) under
OUT_DIR/logs, serves them with TensorBoard on 127.0.0.1, and saves OUT_DIR/text.png, OUT_DIR/images.png and
OUT_DIR/samples.html (the samples' HTML as TensorBoard's text plugin serves it to the page). Screenshots need
Debian's chromium (`apt-get install chromium`); `served_text` needs TensorBoard alone.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_run(logdir: Path, name: str = "tiny-blip2-opt", n: int = 2) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_ssd.callbacks import AcceptanceFigures, DraftLengthSweep, DraftSamples
    from lightning_ssd.models import ImitationModule
    from tests.models.helpers import tiny_data, tiny_trainer

    module = ImitationModule(name, n=n, max_new_tokens=24, num_samples=3)
    callbacks = [AcceptanceFigures(), DraftSamples(max_samples=2),
                 DraftLengthSweep(draft_lengths=[1, 2, 4], max_batches=1, stages=["fit"])]
    logger = TensorBoardLogger(logdir, name="run", default_hp_metric=False)
    trainer = tiny_trainer(logdir, max_epochs=1, logger=logger, callbacks=callbacks)
    trainer.fit(module, tiny_data(name, task="caption", num_train=4, num_val=6, batch_size=4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=20000", *args], capture_output=True, text=True, timeout=120)


@contextmanager
def serve(logdir: Path):
    """TensorBoard on 127.0.0.1 over `logdir`; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def served_text(base: str, run: str, tag: str) -> str:
    """The HTML that TensorBoard's text plugin serves for the latest step of `tag` (what the page shows)."""
    query = urlencode({"run": run, "tag": tag})
    for _ in range(100):  # TensorBoard reads the event files in the background after it starts
        with urllib.request.urlopen(f"{base}/data/plugin/text/text?{query}", timeout=30) as response:
            steps = json.loads(response.read())
        if steps:
            return steps[-1]["text"]
        time.sleep(0.3)
    raise TimeoutError(f"TensorBoard at {base} served no text for run {run!r}, tag {tag!r}")


def capture(out: Path, backbone: str = "tiny-blip2-opt", n: int = 2) -> dict[str, Path]:
    """Writes the run, serves it, and returns the files written."""
    if CHROMIUM is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    logdir = out / "logs"
    write_run(logdir, backbone, n)
    with serve(logdir) as base:
        files = {"text": out / "text.png", "images": out / "images.png", "html": out / "samples.html"}
        _chromium("--window-size=1400,1600", f"--screenshot={files['text']}", f"{base}/#text")
        _chromium("--window-size=1400,2400", f"--screenshot={files['images']}", f"{base}/#images")
        files["html"].write_text(served_text(base, "run/version_0", "val/samples/text_summary"), encoding="utf-8")
        return files


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tensorboard_views")
    target.mkdir(parents=True, exist_ok=True)
    extra = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 else ()
    for kind, path in capture(target, *extra).items():
        print(kind, path)
