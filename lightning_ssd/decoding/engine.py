"""Decoders over a split decoder: plain (full model), draft-only, and speculative (a drafter plus the full model).

All of them decode a whole left-padded batch with one forward pass per step, on the same `SplitDecoder` calls and
the same `BatchState` (see state.py for how the KV cache holds rows that advance by different amounts), so their
timings compare like with like. Tokens are chosen by an `AcceptanceRule` (greedy or speculative sampling), given to
`decode` by `generate()` from the generation config.

Speculative cycle (paper Algorithm 1), with the shallow KV cache shared between draft and verification:

  1. draft: the drafter proposes up to d tokens per row (`SelfSpeculativeDecoder`: layers [0, n) + imitation net +
     head, autoregressively) and keeps the layer-n states x_n of the row's last token and of each draft;
  2. verify deep layers: ONE pass of layers [n, L) over those saved states (the shallow layers are never recomputed);
  3. accept: the rule keeps each row's longest accepted prefix plus the full model's token (correction or bonus);
  4. crop / compact caches: every row keeps its accepted slots, rows that finished leave the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.backbones.vlm import DecoderPrompt
from lightning_ssd.decoding.acceptance import AcceptanceRule, GreedyAcceptance, stop_index
from lightning_ssd.decoding.drafters import Drafter, ShallowDrafter
from lightning_ssd.decoding.imitation import ImitationRunner
from lightning_ssd.decoding.narrow_linear import linear_modules, narrow_linear
from lightning_ssd.decoding.result import Cycle, SequenceResult
from lightning_ssd.decoding.schedule import DraftLength, draft_length
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.decoding.state import BatchState


class _Clock:
    """Wall-clock seconds that wait for queued GPU work before reading the time."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


class _Outputs:
    """Per-row tokens and cycles of a batch being decoded, and which rows are still live.

    A step's wall time is shared evenly by the rows live in it, so that the rows' times add up to the batch's.
    """

    def __init__(self, batch_size: int, eos: Sequence[int], max_new_tokens: int) -> None:
        self.eos, self.max_new = tuple(eos), max_new_tokens
        self.tokens: list[list[int]] = [[] for _ in range(batch_size)]
        self.cycles: list[list[Cycle]] = [[] for _ in range(batch_size)]
        self.prefill_s = [0.0] * batch_size
        self.decode_s = [0.0] * batch_size

    def budget(self, row: int) -> int:
        return self.max_new - len(self.tokens[row])

    def finished(self, row: int) -> bool:
        tokens = self.tokens[row]
        return len(tokens) >= self.max_new or (bool(tokens) and tokens[-1] in self.eos)

    def start(self, rows: list[int], first: list[int], seconds: float) -> list[int]:
        """Records the prefill's token of each row; returns the positions (in `rows`) of the rows still live."""
        for row, token in zip(rows, first, strict=True):
            self.tokens[row].append(token)
            self.prefill_s[row] = seconds / len(rows)
        return [i for i, row in enumerate(rows) if not self.finished(row)]

    def emit(self, rows: list[int], emitted: list[list[int]], cycles: list[Cycle], seconds: float) -> list[int]:
        """Appends one step's tokens and cycle to each live row; returns the positions of the rows still live."""
        for row, tokens, cycle in zip(rows, emitted, cycles, strict=True):
            self.tokens[row] += tokens
            self.cycles[row].append(cycle)
            self.decode_s[row] += seconds / len(rows)
        return [i for i, row in enumerate(rows) if not self.finished(row)]

    def results(self) -> tuple[SequenceResult, ...]:
        return tuple(
            SequenceResult(tuple(t), tuple(c), p, d)
            for t, c, p, d in zip(self.tokens, self.cycles, self.prefill_s, self.decode_s, strict=True)
        )


def _keep_live(state: BatchState, live: list[int], rows: list[int], token: torch.Tensor
               ) -> tuple[list[int], torch.Tensor]:
    """Drops the rows that finished (`live`: positions of those that did not); returns the rows and last tokens."""
    if len(live) == len(rows):
        return rows, token
    keep = torch.tensor(live, device=token.device)
    state.keep_rows(keep)
    return state.rows.tolist(), token[keep]


class _PlainDecoder:
    """One pass of layers [0, n) (+ imitation) -> head per token, for every live row at once (n = L: the full
    model)."""

    def __init__(self, decoder: SplitDecoder, n: int, imitation: nn.Module | None, eos: Sequence[int]) -> None:
        self.decoder, self.n, self.imitation = decoder, n, imitation
        self.runner = ImitationRunner(imitation)
        self.eos = tuple(eos)

    @torch.inference_mode()
    def decode(
        self, prompt: DecoderPrompt, max_new_tokens: int, rule: AcceptanceRule | None = None
    ) -> tuple[SequenceResult, ...]:
        rule = rule or GreedyAcceptance()
        clock, n = _Clock(prompt.inputs_embeds.device), self.n
        state = BatchState(self.decoder, prompt)
        out = _Outputs(state.batch_size, self.eos, max_new_tokens)
        t0 = clock()
        logits = self.decoder.head(self.runner.imitate(state, state.prefill(0, n), None)[:, -1:])[:, -1]
        token = rule.pick(logits)
        rows = state.rows.tolist()
        live = out.start(rows, token.tolist(), clock() - t0)
        while live:
            start = clock()
            rows, last = _keep_live(state, live, rows, token)
            x = state.token_states(last, 0, n)  # (B, 1, D)
            token = rule.pick(self.decoder.head(self.runner.imitate(state, x, 0))[:, -1])
            state.advance()
            emitted = [[t] for t in token.tolist()]
            seconds, deep = clock() - start, int(n == self.decoder.num_layers)
            share = seconds / len(rows)
            cycles = [Cycle(0, 0, 1, deep, 0.0 if deep else share, share if deep else 0.0) for _ in rows]
            live = out.emit(rows, emitted, cycles, seconds)
        return out.results()


class GreedyDecoder(_PlainDecoder):
    """Plain KV-cached decoding with the full model: one pass of all L layers per token (greedy or sampled)."""

    def __init__(self, decoder: SplitDecoder, eos_token_id: Sequence[int] = ()) -> None:
        super().__init__(decoder, decoder.num_layers, None, eos_token_id)


class DraftOnlyDecoder(_PlainDecoder):
    """The draft model alone: layers [0, n) (+ imitation net) -> final norm -> head, no verification.

    Args:
        decoder: the backbone's split decoder.
        spec: the draft: its n and imitation network (d and the threshold play no part without verification).
        eos_token_id: tokens that end a sequence.
    """

    def __init__(self, decoder: SplitDecoder, spec: DraftSpec, eos_token_id: Sequence[int] = ()) -> None:
        self.spec = spec.check(decoder)
        super().__init__(decoder, spec.n, spec.imitation, eos_token_id)


class SpeculativeDecoder:
    """Lossless speculative decoding of a batch: a drafter proposes, the full model's layers [layer, L) verify.

    Args:
        decoder: the backbone's split decoder.
        drafter: proposes the draft tokens and the states verification starts from.
        draft: d per cycle: an int, "dynamic" (paper eq. 5) or a schedule object; each row follows its own d(t).
        eos_token_id: tokens that end a sequence (kept in the output, like transformers' generate).
        cpu_narrow_linear: on CPU, compute the verification pass's linear layers as W @ x^T (see narrow_linear.py).
    """

    def __init__(
        self,
        decoder: SplitDecoder,
        drafter: Drafter,
        draft: int | str | DraftLength = 4,
        eos_token_id: Sequence[int] = (),
        cpu_narrow_linear: bool = True,
    ) -> None:
        self.decoder, self.drafter = decoder, drafter
        self.schedule = draft_length(draft)
        self.eos = tuple(eos_token_id)
        self.cpu_narrow_linear = cpu_narrow_linear
        self._deep_linears = linear_modules(decoder.layers[drafter.layer:])

    @torch.inference_mode()
    def decode(
        self, prompt: DecoderPrompt, max_new_tokens: int, rule: AcceptanceRule | None = None
    ) -> tuple[SequenceResult, ...]:
        rule = rule or GreedyAcceptance()
        clock, n, L = _Clock(prompt.inputs_embeds.device), self.drafter.layer, self.decoder.num_layers
        state = BatchState(self.decoder, prompt)
        out = _Outputs(state.batch_size, self.eos, max_new_tokens)
        t0 = clock()
        x_n = state.prefill(0, n)
        self.drafter.observe_prompt(state, x_n)
        token = rule.pick(self.decoder.head(state.prefill(n, L, x_n)[:, -1:])[:, -1])
        rows = state.rows.tolist()
        live = out.start(rows, token.tolist(), clock() - t0)
        while live:
            start = clock()
            rows, last = _keep_live(state, live, rows, token)
            emitted, cycles, token = self._cycle(state, rows, last, out, rule, clock)
            live = out.emit(rows, emitted, cycles, clock() - start)
        return out.results()

    def _cycle(
        self, state: BatchState, rows: list[int], last: torch.Tensor, out: _Outputs, rule: AcceptanceRule,
        clock: _Clock,
    ) -> tuple[list[list[int]], list[Cycle], torch.Tensor]:
        """One draft-verify cycle of the live `rows`: their emitted tokens and cycles, and each row's new last token
        (fed next cycle)."""
        L = self.decoder.num_layers
        budgets = [min(self.schedule(len(out.tokens[r])), out.budget(r) - 1) for r in rows]
        t0 = clock()
        # 1. draft: up to d tokens per row, with the states verification starts from
        draft = self.drafter.propose(state, last, torch.tensor(budgets, device=last.device), rule)
        t1 = clock()
        # 2. verify deep layers: one pass of layers [layer, L) over the saved states
        with narrow_linear(self._deep_linears, self.cpu_narrow_linear):
            x_L = state.run(draft.states, draft.layer, L)
        logits = self.decoder.head(x_L)  # (B, D + 1, V)
        # 3. accept: each row's accepted prefix, then the full model's correction or bonus token
        verdict = rule.judge(draft.tokens, draft.lengths, draft.q, logits)
        # 4. crop / compact caches: keep each row's last token and its accepted drafts; the new token is fed next
        state.commit(verdict.accepted + 1, L)
        self.drafter.feedback(state, draft, verdict.accepted)
        accepted, drafted = verdict.accepted.tolist(), draft.lengths.tolist()
        drafts, following = draft.tokens.tolist(), verdict.next_tokens.tolist()
        t2 = clock()
        emitted, cycles = [], []
        for i, row in enumerate(rows):
            k = accepted[i]
            tokens = drafts[i][:k] + [following[i]]
            tokens = tokens[: stop_index(tokens, self.eos, out.budget(row))]
            rejected = drafts[i][k] if k < drafted[i] else None
            emitted.append(tokens)
            cycles.append(Cycle(drafted[i], k, len(tokens), 1, (t1 - t0) / len(rows), (t2 - t1) / len(rows),
                                rejected))
        return emitted, cycles, verdict.next_tokens


class SelfSpeculativeDecoder(SpeculativeDecoder):
    """Lossless self-speculative decoding: draft with layers [0, n) + imitation, verify with [n, L).

    Args:
        decoder: the backbone's split decoder.
        spec: the draft: n, the imitation network, d (an int, "dynamic" (paper eq. 5) or a schedule object) and the
            confidence threshold (see `DraftSpec`; the threshold changes the work per cycle, never the output).
        eos_token_id: tokens that end a sequence (kept in the output, like transformers' generate).
        cpu_narrow_linear: on CPU, compute the verification pass's linear layers as W @ x^T (see narrow_linear.py).
    """

    def __init__(
        self,
        decoder: SplitDecoder,
        spec: DraftSpec,
        eos_token_id: Sequence[int] = (),
        cpu_narrow_linear: bool = True,
    ) -> None:
        drafter = ShallowDrafter(decoder, spec, eos_token_id)
        super().__init__(decoder, drafter, spec.draft, eos_token_id, cpu_narrow_linear)

    @property
    def spec(self) -> DraftSpec:
        return self.drafter.spec

    @property
    def n(self) -> int:
        return self.spec.n
