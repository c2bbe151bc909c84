"""Two CPU processes on gloo: metric states really gather, including from a rank that saw no sample."""

import json
import shutil
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_ssd.metrics import CaptionScores, ChatJudge, JudgedScore

PREDS = ["a dog runs on grass", "two cats sleep on a sofa", "ünïcode café"]
REFS = [["a dog running on the grass", "dog on grass"], ["two cats sleeping"], ["a café"]]
# Uneven on purpose: the judge's samples are split 3 / 1 over the ranks.
JUDGED = {0: (["q0", "q1", "q2"], ["0.2", "0.9", "1.0"], ["r0", "r1", "r2"]), 1: (["q3"], ["0.5"], ["r3"])}


class _EchoJudge(ChatJudge):
    """Grades a prediction with the number it is (the prediction is the table's last filled cell)."""

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, messages):
        self.calls += 1
        return messages[-1]["content"].rstrip(" |").rsplit(" | ", 1)[-1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        captions = CaptionScores(meteor=False, spice=False)
        if rank == 0:  # rank 1 has no caption at all
            captions.update(PREDS, REFS)
        judge = _EchoJudge()
        judged = JudgedScore("mm-vet", judge=judge, num_workers=1)
        judged.update(*JUDGED[rank])
        result = {"captions": captions.compute(), "judged": judged.compute(), "judge_calls": judge.calls}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_two_ranks_gather_strings_and_judge_once(tmp_path):
    context = mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers did not finish within 120 s")
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))

    single = CaptionScores(meteor=False, spice=False)
    single.update(PREDS, REFS)
    assert rank0["captions"] == pytest.approx(single.compute())
    assert rank1["captions"] == rank0["captions"]

    assert rank0["judged"] == rank1["judged"]
    assert rank0["judged"]["num_samples"] == 4
    assert rank0["judged"]["score"] == pytest.approx(100 * (0.2 + 0.9 + 1.0 + 0.5) / 4)
    assert (rank0["judge_calls"], rank1["judge_calls"]) == (4, 0)  # rank 0 judges, the others get its result
