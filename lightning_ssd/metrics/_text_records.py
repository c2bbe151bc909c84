"""Strings as metric states: UTF-8 bytes in uint8 tensors, so that they gather under DDP like any tensor."""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors


def encode_texts(texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Packs ``texts`` into one flat uint8 tensor of UTF-8 bytes and an int64 tensor of byte lengths."""
    encoded = [text.encode("utf-8") for text in texts]
    lengths = torch.tensor([len(b) for b in encoded], dtype=torch.int64)
    flat = b"".join(encoded)
    data = torch.frombuffer(bytearray(flat), dtype=torch.uint8) if flat else torch.zeros(0, dtype=torch.uint8)
    return data, lengths


def decode_texts(data: Tensor, lengths: Tensor) -> list[str]:
    """Inverse of :func:`encode_texts`."""
    total = int(lengths.sum())
    if total != data.numel():
        raise ValueError(f"text state is corrupt: the lengths sum to {total} bytes but {data.numel()} are stored")
    flat = data.to("cpu", torch.uint8).numpy().tobytes()
    return [flat[start:end].decode("utf-8") for start, end in _spans(lengths)]


def _spans(lengths: Tensor) -> list[tuple[int, int]]:
    ends = torch.cumsum(lengths.cpu(), 0)
    return list(zip((ends - lengths.cpu()).tolist(), ends.tolist(), strict=True))


class TextRecordMetric(Metric):
    """Base for metrics that must see every sample's strings at ``compute()``, on every rank.

    A record is a list of strings (e.g. a prediction and its references). Records are stored as three
    ``cat``-reduced list states: the UTF-8 bytes, the byte length of each string and the number of strings
    in each record. After a DDP sync the records of rank 0 come first, then those of rank 1, and so on.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _STATE_DTYPES = {"text_bytes": torch.uint8, "text_lengths": torch.int64, "record_sizes": torch.int64}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in self._STATE_DTYPES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Only accumulates, like ``update``: scoring each batch on its own would start Java or call the judge."""
        self.update(*args, **kwargs)

    def _append_records(self, records: Sequence[Sequence[str]]) -> None:
        data, lengths = encode_texts([text for record in records for text in record])
        self.text_bytes.append(data.to(self.device))
        self.text_lengths.append(lengths.to(self.device))
        self.record_sizes.append(torch.tensor([len(r) for r in records], dtype=torch.int64, device=self.device))

    def _records(self) -> list[list[str]]:
        if isinstance(self.record_sizes, list) and not self.record_sizes:  # nothing added (and not synced)
            return []
        data, lengths, sizes = (dim_zero_cat(getattr(self, name)) for name in self._STATE_DTYPES)
        texts = decode_texts(data, lengths)
        return [texts[start:end] for start, end in _spans(sizes)]

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        # torchmetrics stands in an empty float tensor for an empty list state, so a rank that saw no sample
        # would all_gather float32 against the uint8/int64 of the others; give it empty tensors of the right dtype.
        for name, dtype in self._STATE_DTYPES.items():
            if not getattr(self, name):
                setattr(self, name, [torch.zeros(0, dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)
