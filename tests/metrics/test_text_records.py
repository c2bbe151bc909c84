import pytest
import torch

from lightning_ssd.metrics._text_records import TextRecordMetric, decode_texts, encode_texts


class _Texts(TextRecordMetric):
    def update(self, records: list[list[str]]) -> None:
        self._append_records(records)

    def compute(self) -> list[list[str]]:
        return self._records()


@pytest.mark.parametrize(
    "texts",
    [[], [""], ["", "", "a"], ["a cat", "ünïcode café 🚀", "line\nbreak\r\n", "tab\tand  spaces "]],
)
def test_encode_decode_round_trip(texts):
    data, lengths = encode_texts(texts)
    assert data.dtype == torch.uint8 and lengths.dtype == torch.int64
    assert data.numel() == sum(len(t.encode()) for t in texts)
    assert decode_texts(data, lengths) == texts


def test_decode_rejects_inconsistent_lengths():
    data, lengths = encode_texts(["abc"])
    with pytest.raises(ValueError, match="corrupt"):
        decode_texts(data, lengths + 1)


def test_records_keep_their_boundaries_across_updates():
    metric = _Texts()
    metric.update([["pred", "ref 1", "ref 2"], ["", "r"]])
    metric.update([["only one"]])
    assert metric.compute() == [["pred", "ref 1", "ref 2"], ["", "r"], ["only one"]]
    metric.reset()
    assert metric._records() == []


def test_forward_only_accumulates():
    metric = _Texts()
    assert metric([["a", "b"]]) is None
    assert metric.compute() == [["a", "b"]]


def test_merge_state_concatenates_like_a_ddp_gather():
    rank0, rank1, both = _Texts(), _Texts(), _Texts()
    a, b = [["x", "y"], ["z", "w", "v"]], [["é", ""]]
    rank0.update(a)
    rank1.update(b)
    both.update(a + b)
    rank1.merge_state(rank0)  # the incoming state goes first, as rank 0's does in a gather
    assert rank1.compute() == both.compute() == a + b
