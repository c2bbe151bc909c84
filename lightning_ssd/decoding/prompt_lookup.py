"""Prompt lookup: drafts by copying what followed the row's latest n-gram earlier in its own tokens.

The draft model is no model at all (transformers' `prompt_lookup_num_tokens`, Saxena 2023): the last `ngram` tokens
of a row (trying `max_ngram` down to `min_ngram`) are searched for in the row's earlier tokens (prompt ids, then
generated ones); the most recent earlier match proposes the tokens that followed it. Verification then runs all L
layers over the row's last token and the proposals, from the embeddings (layer 0). Rows with no match propose
nothing and advance by the full model's token alone. Proposals are deterministic, so for a sampling rule their q is
one-hot, which keeps speculative sampling exact.

It reads `state.histories` (each live row's tokens), which `SlotState` keeps.
"""

from __future__ import annotations

import torch

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.decoding.acceptance import AcceptanceRule, GreedyAcceptance
from lightning_ssd.decoding.drafters import Draft, Drafter


def lookup(history: list[int], budget: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to `budget` tokens that followed the most recent earlier occurrence of the history's last n-gram."""
    if budget <= 0:
        return []
    for size in range(min(max_ngram, len(history) - 1), min_ngram - 1, -1):
        tail = history[-size:]
        for start in range(len(history) - size - 1, -1, -1):
            if history[start : start + size] == tail:
                return history[start + size : start + size + budget]
    return []


class PromptLookupDrafter(Drafter):
    """Proposes the continuation of the row's last n-gram's previous occurrence; the full model verifies all L layers.

    Args:
        decoder: the backbone's split decoder.
        max_ngram: the longest n-gram matched (tried first).
        min_ngram: the shortest n-gram matched.
    """

    layer = 0

    def __init__(self, decoder: SplitDecoder, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"prompt lookup needs 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.decoder, self.max_ngram, self.min_ngram = decoder, max_ngram, min_ngram

    def observe_prompt(self, state, x: torch.Tensor) -> None:
        """Nothing to see: proposals come from the tokens alone."""

    def propose(self, state, last: torch.Tensor, budget: torch.Tensor, rule: AcceptanceRule) -> Draft:
        found = [lookup(h, int(k), self.max_ngram, self.min_ngram) for h, k in zip(state.histories, budget.tolist(),
                                                                                     strict=True)]
        D = max(map(len, found), default=0)
        tokens = torch.tensor([f + [0] * (D - len(f)) for f in found], dtype=torch.long, device=last.device)
        tokens = tokens.reshape(len(found), D)
        lengths = torch.tensor([len(f) for f in found], device=last.device)
        q = None
        if D and not isinstance(rule, GreedyAcceptance) and getattr(rule, "samples", True):
            q = torch.nn.functional.one_hot(tokens, self.decoder.vocab_size).float()
        block = torch.cat([last.unsqueeze(1), tokens], 1)  # (B, D + 1): the last token, then the proposals
        pos = state.position.unsqueeze(1) + torch.arange(D + 1, device=last.device)
        states = self.decoder.embed(self.decoder.embed_tokens(block), pos)
        return Draft(tokens=tokens, lengths=lengths, q=q, states=states, layer=0)
