"""Greedy decoders over a split decoder: plain (full model), draft-only, and self-speculative (SSD).

All three run on the same `SplitDecoder` calls, so their timings compare like with like. Sequences of a batch are
decoded one after the other (batch size 1 inside), which keeps every cache free of padding.

SSD cycle (paper Algorithm 1), with the shallow KV cache shared between draft and verification:
  1. draft: up to d tokens from layers [0, n) + imitation net + head, autoregressively (stopping early, if asked,
     at the first draft whose top-1 probability is below a threshold); the layer-n states x_n of the last accepted
     token and of each draft are kept;
  2. verify: ONE pass of layers [n, L) over those d + 1 saved states (the shallow layers are never recomputed);
  3. accept: the longest matching prefix plus the full model's token (correction or bonus);
  4. crop: every cache layer (and the imitation net's attention state) back to the accepted length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from lightning_ssd.backbones.decoder import SplitDecoder
from lightning_ssd.backbones.vlm import DecoderPrompt
from lightning_ssd.decoding.narrow_linear import linear_modules, narrow_linear
from lightning_ssd.decoding.result import Cycle, SequenceResult
from lightning_ssd.decoding.schedule import DraftLength, draft_length
from lightning_ssd.decoding.verify import accepted_prefix_length, stop_index


class _Clock:
    """Wall-clock seconds that wait for queued GPU work before reading the time."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


class _Session:
    """The decoding state of one sequence: its cache, position and the imitation net's state."""

    def __init__(self, decoder: SplitDecoder, prompt: DecoderPrompt, imitation: nn.Module | None) -> None:
        self.dec = decoder
        self.prompt = prompt
        self.encoder = prompt.encoder
        self.cache = decoder.new_cache()
        self.imitation = imitation
        self.imitation_state = imitation.new_state() if imitation is not None else None
        self.position = prompt.inputs_embeds.shape[1]  # position of the next token to feed

    def prompt_states(self, hi: int) -> torch.Tensor:
        p = self.prompt
        x = self.dec.embed(p.inputs_embeds, p.position_ids)
        return self.dec.run_layers(x, 0, hi, self.cache, p.position_ids, None, self.encoder)

    def token_states(self, token: int, position: int, hi: int) -> torch.Tensor:
        """x_hi of one token at `position`, through layers [0, hi)."""
        device = self.prompt.inputs_embeds.device
        ids = torch.tensor([[token]], device=device)
        pos = torch.tensor([[position]], device=device)
        x = self.dec.embed(self.dec.embed_tokens(ids), pos)
        return self.dec.run_layers(x, 0, hi, self.cache, pos, None, self.encoder)

    def deep(self, x_n: torch.Tensor, n: int, start: int) -> torch.Tensor:
        pos = torch.arange(start, start + x_n.shape[1], device=x_n.device).unsqueeze(0)
        return self.dec.run_layers(x_n, n, self.dec.num_layers, self.cache, pos, None, self.encoder)

    def draft_logits(self, x_n: torch.Tensor) -> torch.Tensor:
        x_i = self.imitation(x_n, self.imitation_state) if self.imitation is not None else x_n
        return self.dec.head(x_i[:, -1:])

    def observe(self, x_n: torch.Tensor) -> None:
        if self.imitation is not None:
            self.imitation.observe(x_n, self.imitation_state)

    def crop(self, length: int, hi: int) -> None:
        self.dec.crop_layers(self.cache, 0, hi, length)
        if self.imitation_state is not None:
            self.imitation_state.crop(length)


def _argmax(logits: torch.Tensor) -> list[int]:
    return logits[0].argmax(-1).tolist()


def _check_layer(n: int, num_layers: int) -> None:
    if not 1 <= n <= num_layers - 1:
        raise ValueError(f"draft exit layer n must be in [1, L-1] = [1, {num_layers - 1}] for this backbone, got n={n}")


def check_confidence_threshold(threshold: float | None, setting: str = "confidence_threshold") -> None:
    """A draft confidence threshold is a probability, or None for none; `setting` names it in the error."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"draft {setting} must be in [0, 1] or None, got {threshold}")


def _check_imitation(imitation: nn.Module | None, decoder: SplitDecoder) -> None:
    width = getattr(imitation, "hidden_size", None)
    if imitation is not None and width != decoder.hidden_size:
        raise ValueError(
            f"imitation network width {width} does not match the backbone hidden size {decoder.hidden_size}; "
            "train or load an imitation network for this backbone"
        )


class GreedyDecoder:
    """Plain KV-cached greedy decoding with the full model: one pass of all L layers per token."""

    def __init__(self, decoder: SplitDecoder, eos_token_id: Sequence[int] = ()) -> None:
        self.decoder = decoder
        self.eos = tuple(eos_token_id)

    @torch.inference_mode()
    def decode(self, prompt: DecoderPrompt, max_new_tokens: int) -> SequenceResult:
        clock, L = _Clock(prompt.inputs_embeds.device), self.decoder.num_layers
        s = _Session(self.decoder, prompt, None)
        t0 = clock()
        tokens = _argmax(self.decoder.head(s.prompt_states(L)[:, -1:]))
        t1 = clock()
        cycles = []
        while tokens[-1] not in self.eos and len(tokens) < max_new_tokens:
            start = clock()
            x_L = s.token_states(tokens[-1], s.position, L)
            tokens += _argmax(self.decoder.head(x_L))
            s.position += 1
            cycles.append(Cycle(0, 0, 1, 1, 0.0, clock() - start))
        return SequenceResult(tuple(tokens), tuple(cycles), t1 - t0, clock() - t1)


class DraftOnlyDecoder:
    """The draft model alone: layers [0, n) (+ imitation net) -> final norm -> head, no verification."""

    def __init__(
        self, decoder: SplitDecoder, n: int, imitation: nn.Module | None = None, eos_token_id: Sequence[int] = ()
    ) -> None:
        _check_layer(n, decoder.num_layers)
        _check_imitation(imitation, decoder)
        self.decoder, self.n, self.imitation = decoder, n, imitation
        self.eos = tuple(eos_token_id)

    @torch.inference_mode()
    def decode(self, prompt: DecoderPrompt, max_new_tokens: int) -> SequenceResult:
        clock = _Clock(prompt.inputs_embeds.device)
        s = _Session(self.decoder, prompt, self.imitation)
        t0 = clock()
        tokens = _argmax(s.draft_logits(s.prompt_states(self.n)))
        t1 = clock()
        cycles = []
        while tokens[-1] not in self.eos and len(tokens) < max_new_tokens:
            start = clock()
            tokens += _argmax(s.draft_logits(s.token_states(tokens[-1], s.position, self.n)))
            s.position += 1
            cycles.append(Cycle(0, 0, 1, 0, clock() - start, 0.0))
        return SequenceResult(tuple(tokens), tuple(cycles), t1 - t0, clock() - t1)


class SelfSpeculativeDecoder:
    """Lossless greedy self-speculative decoding: draft with layers [0, n) + imitation, verify with [n, L).

    Args:
        decoder: the backbone's split decoder.
        n: exit layer of the draft model, 1 <= n <= L - 1.
        imitation: the imitation network (None drafts with the plain early exit, layer n -> norm -> head).
        draft: d per cycle: an int, "dynamic" (paper eq. 5) or a schedule object.
        eos_token_id: tokens that end a sequence (kept in the output, like transformers' generate).
        cpu_narrow_linear: on CPU, compute the verification pass's linear layers as W @ x^T (see narrow_linear.py).
        confidence_threshold: stop drafting early when the draft's top-1 probability falls below this value (the
            unconfident token is not drafted; verification then yields the full model's token at its place).
            None drafts d tokens every cycle. Output is unchanged either way; only the work per cycle differs.
    """

    def __init__(
        self,
        decoder: SplitDecoder,
        n: int,
        imitation: nn.Module | None = None,
        draft: int | str | DraftLength = 4,
        eos_token_id: Sequence[int] = (),
        cpu_narrow_linear: bool = True,
        confidence_threshold: float | None = None,
    ) -> None:
        _check_layer(n, decoder.num_layers)
        _check_imitation(imitation, decoder)
        check_confidence_threshold(confidence_threshold)
        self.confidence_threshold = confidence_threshold
        self.decoder, self.n, self.imitation = decoder, n, imitation
        self.schedule = draft_length(draft)
        self.eos = tuple(eos_token_id)
        self.cpu_narrow_linear = cpu_narrow_linear
        self._deep_linears = linear_modules(decoder.layers[n:])

    @torch.inference_mode()
    def decode(self, prompt: DecoderPrompt, max_new_tokens: int) -> SequenceResult:
        clock, n = _Clock(prompt.inputs_embeds.device), self.n
        s = _Session(self.decoder, prompt, self.imitation)
        t0 = clock()
        x_n = s.prompt_states(n)
        s.observe(x_n)
        tokens = _argmax(self.decoder.head(s.deep(x_n, n, 0)[:, -1:]))
        t1 = clock()
        cycles = []
        while tokens[-1] not in self.eos and len(tokens) < max_new_tokens:
            cycles.append(self._cycle(s, tokens, max_new_tokens - len(tokens), clock))
        return SequenceResult(tuple(tokens), tuple(cycles), t1 - t0, clock() - t1)

    def _cycle(self, s: _Session, tokens: list[int], budget: int, clock: _Clock) -> Cycle:
        n, start_pos = self.n, s.position
        d = min(self.schedule(len(tokens)), budget - 1)
        t0 = clock()
        # 1. draft: x_n of the last token and of each kept draft are saved for verification
        x_n = s.token_states(tokens[-1], start_pos, n)
        states, drafts = [x_n], []
        while len(drafts) < d and not (drafts and drafts[-1] in self.eos):
            token, confident = self._draft_token(s.draft_logits(x_n))
            if not confident:
                break  # x_n of every kept draft is saved already: verification still yields the full model's token
            drafts.append(token)
            x_n = s.token_states(token, start_pos + len(drafts), n)
            states.append(x_n)
        else:
            s.observe(x_n)  # the last saved state fed no draft step; the imitation net's state must still see it
        t1 = clock()
        # 2. verify deep layers: one pass of layers [n, L) over the saved shallow states
        with narrow_linear(self._deep_linears, self.cpu_narrow_linear):
            x_L = s.deep(torch.cat(states, dim=1), n, start_pos)
        target = _argmax(self.decoder.head(x_L))
        # 3. accept the longest agreeing prefix, then the full model's correction or bonus token
        k = accepted_prefix_length(drafts, target)
        emitted = (drafts[:k] + [target[k]])[: stop_index(drafts[:k] + [target[k]], self.eos, budget)]
        tokens += emitted
        # 4. crop caches: keep the last token and the k accepted drafts; the new last token is fed next cycle
        s.position = start_pos + k + 1
        s.crop(s.position, self.decoder.num_layers)
        return Cycle(len(drafts), k, len(emitted), 1, t1 - t0, clock() - t1)

    def _draft_token(self, logits: torch.Tensor) -> tuple[int, bool]:
        """The draft's greedy token and whether it clears the confidence threshold (always, without one)."""
        last = logits[0, -1]
        if self.confidence_threshold is None:
            return int(last.argmax()), True
        prob, token = torch.softmax(last.float(), -1).max(-1)
        return int(token), float(prob) >= self.confidence_threshold
