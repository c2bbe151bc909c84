"""Continuous batching: a stream of requests decoded over a fixed number of rows, admitted and retired every cycle.

`ContinuousEngine` reads like a scheduler (vLLM's, LitServe's continuous-batching loop):

    engine.submit(request)      # queued in arrival order
    while engine.has_work:
        for event in engine.step():   # 1. admit  2. one cycle of every live row  3. retire
            stream(event.request_id, event.tokens)

`step()`:
  1. admit: while a row is free, the oldest waiting request is encoded (vision encoder, projector) and its prompt
     prefilled into the free row, together with the waiting requests right behind it whose inputs have the same
     shapes (one prompt length: no padding); the prefill's logits give each its first token, streamed at once.
     Prefill and decoding share the time by turns: a step prefills the requests it admits, then runs one cycle of
     every live row, so a long queue delays the live rows by one prefill pass per group admitted, and no more.
     With `prefill_batch` > 1, waiting requests are admitted only once that many rows are free (or the queue fits),
     so that fewer, fuller prefill passes serve them;
  2. one cycle of every live row (the paper's Algorithm 1 with a drafter, or one full-model token per row without):
     draft up to d_b tokens per row (d_b from the draft policy, which then sees the cycle's cost and the prefill
     passes that refilled the rows the cycle before freed), verify them in one pass of layers [n, L), accept each
     row's longest agreeing prefix plus the full model's token;
  3. retire: a row that met a stop token or its budget, or whose request was cancelled, frees its row at once.

Requests in one batch keep their own settings (greedy or sampled, temperature, top-k, top-p, seed, token budget,
stop tokens): see `row_rules.py`. Every row sits in a preallocated `SlotCache` (kv_cache.py), so no tensor grows as a
sequence gets longer, and a row accepting k drafts costs no crop.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass, replace
from functools import partial

import torch

from lightning_ssd.backbones.vlm import SplitVLM
from lightning_ssd.decoding.acceptance import stop_index
from lightning_ssd.decoding.cost import CostModel
from lightning_ssd.decoding.draft_policy import CycleReport, DraftPolicy, RowAcceptance, draft_policy
from lightning_ssd.decoding.drafters import Drafter
from lightning_ssd.decoding.narrow_linear import linear_modules, narrow_linear
from lightning_ssd.decoding.result import Cycle, SequenceResult
from lightning_ssd.decoding.row_rules import GREEDY, PerRowAcceptance, RowRule
from lightning_ssd.decoding.slots import SlotState

WARM_UP_ROWS = 4  # the warm-up stream's rows past which no new shape appears (dynamic shapes: one count above one)


def warm_up_count(max_rows: int) -> int:
    """How many different requests `ContinuousEngine.warm_up` runs at `max_rows`: one alone, then a stream of one
    more than the rows (up to `WARM_UP_ROWS`)."""
    return 1 + (max_rows + 1 if max_rows <= WARM_UP_ROWS else WARM_UP_ROWS)


@dataclass(frozen=True)
class Request:
    """One generation request.

    Attributes:
        inputs: the processor's outputs for ONE image and prompt: `pixel_values`, `input_ids` (1, T), and the
            family's other image inputs (`image_grid_thw`, `image_sizes`); no padding.
        max_new_tokens: the token budget.
        rule: greedy (default) or sampling settings with a seed (`RowRule`).
        stop_token_ids: tokens that end the request besides the model's EOS (kept in the output, as EOS is).
        ignore_eos: decode to the budget whatever the model's EOS (the stop tokens still stop).
    """

    inputs: Mapping[str, torch.Tensor]
    max_new_tokens: int = 30
    rule: RowRule = GREEDY
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenEvent:
    """What one step did for one request: the tokens it appended, and whether the request is done.

    Attributes:
        finish_reason: "stop" (a stop token), "length" (the budget), or None while running. A cancelled request
            gets no further event: `cancel` returns at once.
    """

    request_id: int
    tokens: tuple[int, ...]
    finished: bool = False
    finish_reason: str | None = None


@dataclass
class _Row:
    """A live request: its tokens, its last (not yet cached) token, its acceptance and timings."""

    id: int
    request: Request
    stops: tuple[int, ...]
    tokens: list[int] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    acceptance: RowAcceptance = field(default_factory=RowAcceptance)
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def budget(self) -> int:
        return self.request.max_new_tokens - len(self.tokens)

    def finish_reason(self) -> str | None:
        if self.tokens and self.tokens[-1] in self.stops:
            return "stop"
        return "length" if self.budget <= 0 else None


def _shapes(request: Request) -> tuple:
    """What must match for requests to be prefilled as one batch: their input names and shapes past the batch
    dimension (Qwen2.5-VL's patch rows concatenate whatever their number)."""
    return tuple(sorted((k, tuple(v.shape[1:])) for k, v in request.inputs.items() if torch.is_tensor(v)))


def _stack(inputs: list[Mapping[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
    """The requests' inputs as one batch on `device` (concatenated along the batch dimension)."""
    return {k: torch.cat([x[k] for x in inputs]).to(device) for k in inputs[0]}


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class ContinuousEngine:
    """Decodes a stream of requests with continuous batching, losslessly (each request's greedy tokens are the full
    model's for that request alone).

    Args:
        vlm: the backbone.
        drafter: proposes draft tokens (`ShallowDrafter` for SSD, `PromptLookupDrafter`, ...); None decodes with the
            full model alone, one token per row per step (the baseline, through the same engine).
        draft: each row's d per cycle: an int, "dynamic" (eq. 5), "adaptive" (per-row, from the row's acceptance
            through `cost`), or a `DraftPolicy`; None: the drafter's `spec.draft` (`ShallowDrafter`), else 4.
        cost: the cost model `draft="adaptive"` reads (`measure_cost_model`).
        max_rows: rows decoded at once; further requests queue in arrival order.
        max_slots: key/value slots per row: a request's prompt + budget + one draft block must fit.
        cpu_narrow_linear: on CPU, run the verification pass's linear layers as W @ x^T (see narrow_linear.py).
        compile: run the decoder's layer ranges through `torch.compile` (off by default: see docs/engine.md for
            what it gains and costs on CPU).
        prefill_batch: while rows are decoding, admit waiting requests only once this many rows are free (or all
            of the queue fits), so that they are prefilled in one pass; 1 admits each request as soon as a row frees.
            A pass costs much the same for one prompt as for several where per-pass overhead dominates (small
            models, CPU), so waiting trades a few cycles at fewer rows for fewer prefill passes.
    """

    def __init__(
        self,
        vlm: SplitVLM,
        drafter: Drafter | None = None,
        draft: int | str | DraftPolicy | None = None,
        cost: CostModel | None = None,
        max_rows: int = 8,
        max_slots: int = 1024,
        cpu_narrow_linear: bool = True,
        compile: bool = False,
        prefill_batch: int = 1,
    ) -> None:
        if not 1 <= prefill_batch <= max_rows:
            raise ValueError(f"prefill_batch must be in [1, max_rows] = [1, {max_rows}], got {prefill_batch}")
        self.prefill_batch = prefill_batch
        self.vlm, self.decoder, self.drafter = vlm, vlm.decoder, drafter
        if draft is None:
            spec = getattr(drafter, "spec", None)
            draft = 4 if spec is None else spec.draft
        self.policy = draft_policy(draft, cost)
        self.device = next(vlm.parameters()).device
        self.state = SlotState(self.decoder, max_rows, max_slots, self.device, compile)
        self.rule = PerRowAcceptance()
        self.eos = tuple(vlm.eos_token_id)
        self.cpu_narrow_linear = cpu_narrow_linear
        layer = drafter.layer if drafter is not None else self.decoder.num_layers
        self._deep_linears = linear_modules(self.decoder.layers[layer:])
        self._waiting: deque[tuple[int, Request]] = deque()
        self._rows: list[_Row] = []
        self._last: list[int] = []  # each live row's last token, fed to the next cycle
        self._ids = itertools.count()
        self._cancelled: set[int] = set()
        self._admissions: list[tuple[int, float]] = []  # passes into rows a cycle freed, told to the policy
        self._refill = False  # the last cycle ended with requests waiting: the next pass is its doing
        self.results: dict[int, SequenceResult] = {}

    # -- the request stream ------------------------------------------------------------------------------------------

    def submit(self, request: Request) -> int:
        """Queues a request and returns its id; refused at once if it can never fit a row."""
        if request.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {request.max_new_tokens}")
        ids = request.inputs.get("input_ids")
        if ids is None or ids.ndim != 2 or ids.shape[0] != 1:
            raise ValueError("a request's inputs need input_ids of shape (1, T): one prompt per request, unpadded")
        need = ids.shape[1] + request.max_new_tokens + self._draft_room()
        if need > self.state.max_slots:
            raise ValueError(f"a prompt of {ids.shape[1]} tokens with max_new_tokens={request.max_new_tokens} needs "
                             f"{need} cache slots; the engine has max_slots={self.state.max_slots}")
        request_id = next(self._ids)
        self._waiting.append((request_id, request))
        return request_id

    def cancel(self, request_id: int) -> bool:
        """Drops a waiting request, or frees a live request's row at once; False if it is unknown or done."""
        for i, (waiting_id, _) in enumerate(self._waiting):
            if waiting_id == request_id:
                del self._waiting[i]
                return True
        for row, live in enumerate(self._rows):
            if live.id == request_id:
                self._cancelled.add(request_id)
                self._retire(row)
                return True
        return False

    @property
    def has_work(self) -> bool:
        return bool(self._waiting or self._rows)

    @property
    def live_rows(self) -> int:
        return len(self._rows)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def step(self) -> list[TokenEvent]:
        """Admits waiting requests into free rows, runs one cycle of every live row, retires the finished ones."""
        events = self._admit()
        if self._rows:
            events += self._cycle() if self.drafter is not None else self._plain_step()
        return events

    def warm_up(self, requests: Sequence[Request]) -> float:
        """Runs every step a compiled engine specialises on, so that no later request waits on the compiler; returns
        the seconds it took.

        `requests`: `warm_up_count(max_rows)` different requests (other images). Request i's budget is lowered by 3 i
        tokens (to no less than 2), so that the stream's requests end at different cycles. The first runs alone, the
        others as one stream, then the first alone again. The compiler
        specialises on one row, on each layer range, on whether the rows write their keys and values at one position
        (then no attention mask), and on whether a layer's cache is allocated yet: the first request allocates it, the
        stream holds more requests than rows when rows are few, so that one is admitted while others decode, and the
        last request finds the cache allocated. The engine keeps nothing of it: the results are dropped, and a draft
        policy that is a dataclass (the built-in ones) starts afresh, since the warm-up's cycles timed the compiler.
        """
        if len(requests) != warm_up_count(self.state.max_rows):
            raise ValueError(f"warm_up takes warm_up_count({self.state.max_rows}) = "
                             f"{warm_up_count(self.state.max_rows)} requests, got {len(requests)}")
        requests = [replace(r, max_new_tokens=max(2, r.max_new_tokens - 3 * i)) for i, r in enumerate(requests)]
        start = time.perf_counter()
        for group in ([requests[0]], requests[1:], [requests[0]]):
            self.run(group)
        if is_dataclass(self.policy):
            self.policy = replace(self.policy)  # its settings, none of what it measured
        return time.perf_counter() - start

    def run(self, requests: Sequence[Request]) -> list[SequenceResult]:
        """Submits `requests`, decodes until all are done, and returns their results in order."""
        ids = [self.submit(r) for r in requests]
        for _ in self.stream():
            pass
        return [self.results.pop(i) for i in ids]

    def stream(self) -> Iterator[TokenEvent]:
        """Steps until no request is waiting or live, yielding every event."""
        while self.has_work:
            yield from self.step()

    # -- 1. admit ----------------------------------------------------------------------------------------------------

    def _draft_room(self) -> int:
        """Slots a cycle may write past a row's committed ones: its last token and one draft block."""
        if self.drafter is None:
            return 1
        return 1 + self.policy.max_d

    def _next_group(self) -> list[tuple[int, Request]]:
        """The oldest waiting request, with the waiting requests right behind it whose inputs have the same shapes
        (the same prompt length: no padding), up to the free rows: one prefill pass admits them together."""
        free = self.state.max_rows - len(self._rows)
        group = [self._waiting.popleft()]
        shapes = _shapes(group[0][1])
        while self._waiting and len(group) < free and _shapes(self._waiting[0][1]) == shapes:
            group.append(self._waiting.popleft())
        return group

    def _may_admit(self) -> bool:
        """A row is free, and: nothing is decoding, or `prefill_batch` rows are free, or the whole queue fits."""
        free = self.state.max_rows - len(self._rows)
        return bool(self._waiting) and free > 0 and (
            not self._rows or free >= min(self.prefill_batch, len(self._waiting)))

    @torch.inference_mode()
    def _admit(self) -> list[TokenEvent]:
        events, refill = [], bool(self._rows) or self._refill
        self._refill = False
        while self._may_admit():
            group = self._next_group()
            start = _clock(self.device)
            inputs = _stack([request.inputs for _, request in group], self.device)
            prompt = self.vlm.encode(**inputs)
            histories = inputs["input_ids"].tolist()
            L = self.decoder.num_layers
            if self.drafter is None:
                x_L = self.state.prefill(prompt, histories, L)
            else:
                x_n = self.state.prefill(prompt, histories, self.drafter.layer)
                self.drafter.observe_prompt(self.state, x_n)
                x_L = self.state.prefill_rest(prompt, x_n, self.drafter.layer, L)
            self.rule.begin([request.rule for _, request in group], [0] * len(group))
            tokens = self.rule.pick(self.decoder.head(x_L[:, -1:])[:, -1]).tolist()
            seconds = _clock(self.device) - start
            if refill and self.drafter is not None:  # plain decoding has no policy to tell
                self._admissions.append((len(group), seconds))
            first = len(self._rows)
            for (request_id, request), token in zip(group, tokens, strict=True):
                stops = tuple(request.stop_token_ids) + (() if request.ignore_eos else self.eos)
                live = _Row(request_id, request, stops, tokens=[token], prefill_s=seconds / len(group))
                live.acceptance.generated, live.acceptance.sampled = 1, request.rule.do_sample
                self._rows.append(live)
                self._last.append(token)
                self.state.histories[len(self._rows) - 1].append(token)
                reason = live.finish_reason()
                events.append(TokenEvent(request_id, (token,), reason is not None, reason))
            for row in reversed(range(first, len(self._rows))):  # highest first, as in _emit
                if self._rows[row].finish_reason() is not None:
                    self._retire(row)
        return events

    # -- 2. one cycle of every live row ------------------------------------------------------------------------------

    @torch.inference_mode()
    def _cycle(self) -> list[TokenEvent]:
        rows, L = self._rows, self.decoder.num_layers
        start = _clock(self.device)
        budgets = self.policy.choose([r.acceptance for r in rows], [r.budget - 1 for r in rows])
        last = torch.tensor(self._last, device=self.device)
        self.rule.begin([r.request.rule for r in rows], [len(r.tokens) for r in rows])
        # 1. draft: up to d_b tokens per row, with the states verification starts from
        draft = self.drafter.propose(self.state, last, torch.tensor(budgets, device=self.device), self.rule)
        t1 = _clock(self.device)
        # 2. verify deep layers: one pass of layers [layer, L) over the saved states
        with narrow_linear(self._deep_linears, self.cpu_narrow_linear):
            x_L = self.state.run(draft.states, draft.layer, L)
        logits = self.decoder.head(x_L)  # (B, D + 1, V)
        # 3. accept: each row's accepted prefix, then the full model's correction or bonus token
        verdict = self.rule.judge(draft.tokens, draft.lengths, draft.q, logits)
        # 4. commit: each row keeps its last token and its accepted drafts; the new token is fed next cycle
        self.state.commit(verdict.accepted + 1)
        self.drafter.feedback(self.state, draft, verdict.accepted)
        accepted, drafted = verdict.accepted.tolist(), draft.lengths.tolist()
        drafts, following = draft.tokens.tolist(), verdict.next_tokens.tolist()
        t2 = _clock(self.device)
        share_draft, share_verify = (t1 - start) / len(rows), (t2 - t1) / len(rows)
        emitted, ended = [], []
        for b, live in enumerate(rows):
            k = accepted[b]
            tokens = drafts[b][:k] + [following[b]]
            tokens = tokens[: stop_index(tokens, live.stops, live.budget)]
            if tokens[-1] in live.stops and not live.acceptance.sampled:
                ended.append(len(live.tokens) + len(tokens))
            rejected = drafts[b][k] if k < drafted[b] else None
            live.cycles.append(Cycle(drafted[b], k, len(tokens), 1, share_draft, share_verify, rejected))
            live.acceptance.record(drafted[b], k, len(tokens))
            emitted.append(tokens)
        self._last = following
        report = partial(CycleReport, len(rows), len(drafts[0]), t1 - start, drafted=tuple(drafted),
                         accepted=tuple(accepted), sampled=tuple(r.acceptance.sampled for r in rows),
                         ended=tuple(ended), admissions=tuple(self._admissions))
        self._admissions.clear()
        events = self._emit(emitted, t2 - start)  # retires finished rows: `rows` changes
        self._refill = bool(self._waiting)
        self.policy.observe(report(rest_s=_clock(self.device) - t1))
        return events

    @torch.inference_mode()
    def _plain_step(self) -> list[TokenEvent]:
        rows, L = self._rows, self.decoder.num_layers
        start = _clock(self.device)
        self.rule.begin([r.request.rule for r in rows], [len(r.tokens) for r in rows])
        x_L = self.state.token_states(torch.tensor(self._last, device=self.device), 0, L)
        tokens = self.rule.pick(self.decoder.head(x_L)[:, -1]).tolist()
        self.state.commit(torch.ones(len(rows), dtype=torch.long, device=self.device))
        seconds = _clock(self.device) - start
        for live in rows:
            live.cycles.append(Cycle(0, 0, 1, 1, 0.0, seconds / len(rows)))
            live.acceptance.record(0, 0, 1)
        self._last = tokens
        return self._emit([[t] for t in tokens], seconds)

    # -- 3. retire ---------------------------------------------------------------------------------------------------

    def _emit(self, emitted: list[list[int]], seconds: float) -> list[TokenEvent]:
        events, done = [], []
        for b, (live, tokens) in enumerate(zip(self._rows, emitted, strict=True)):
            live.tokens += tokens
            live.decode_s += seconds / len(self._rows)
            self.state.histories[b] += tokens
            reason = live.finish_reason()
            events.append(TokenEvent(live.id, tuple(tokens), reason is not None, reason))
            if reason is not None:
                done.append(b)
        for b in reversed(done):  # highest first: the rows moved into freed places are never pending ones
            self._retire(b)
        return events

    @torch.inference_mode()
    def _retire(self, row: int) -> None:
        live = self._rows[row]
        if live.id not in self._cancelled:
            self.results[live.id] = SequenceResult(tuple(live.tokens), tuple(live.cycles), live.prefill_s,
                                                   live.decode_s)
        self._cancelled.discard(live.id)
        self.state.retire(row)
        self._rows[row], self._last[row] = self._rows[-1], self._last[-1]
        self._rows.pop()
        self._last.pop()
