"""Per-epoch validation metrics of a training run, read back from the TensorBoard event files it logged."""

from __future__ import annotations

from pathlib import Path


def logged_scalars(log_dir: Path, prefix: str = "val/") -> dict[str, list[float]]:
    """Every scalar whose tag starts with `prefix`, in step order (one value per validation epoch).

    Raises:
        FileNotFoundError: `log_dir` holds no event file (not a TensorBoard log folder).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not any(Path(log_dir).glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event file in {log_dir}: the run logged elsewhere (trainer.logger)")
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith(prefix):
            out[tag] = [e.value for e in sorted(events.Scalars(tag), key=lambda e: e.step)]
    return out
