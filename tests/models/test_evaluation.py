"""Where an SSD sequence first departs from the full model's, as the evaluator records it."""

from lightning_ssd.models.evaluation import Mismatch, first_mismatch


def test_equal_sequences_have_no_mismatch():
    assert first_mismatch("a", [5, 6, 2], (5, 6, 2)) is None


def test_the_first_differing_token_and_both_tokens_there():
    assert first_mismatch(7, [5, 6, 8, 2], [5, 9, 8, 2]) == Mismatch(7, 1, 6, 9, 4, 4)


def test_a_sequence_that_ends_early_differs_where_it_ends():
    assert first_mismatch("b", [5, 6, 2], [5, 6, 2, 4]) == Mismatch("b", 3, None, 4, 3, 4)
    assert first_mismatch("c", [5, 6], [5]) == Mismatch("c", 1, 6, None, 2, 1)
