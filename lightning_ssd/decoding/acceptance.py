"""Acceptance rules: how tokens are chosen from logits, and how the full model judges a batch of drafts.

A rule does three things, all batched over rows:

  - `pick`: the next token from a model's logits (plain decoding, and the prefill's first token);
  - `propose`: a draft token from the draft's logits, with the draft distribution q when the rule needs it;
  - `judge`: the number of leading drafts each row accepts and the token that follows them.

`GreedyAcceptance` keeps the longest prefix equal to the full model's argmax, then the full model's own token.
`SpeculativeSampling` is lossless speculative sampling (Leviathan et al. 2023, Chen et al. 2023): draft token x ~ q is
accepted with probability min(1, p(x) / q(x)); at the first rejection the token is resampled from
norm(max(0, p - q)), and after a fully accepted draft the bonus token is sampled from p. The output is then
distributed exactly as sampling from p alone. p and q are the logits after the same transformers logits warpers
(temperature, top-k, top-p, min-p), built from the generation config as transformers' own `generate` builds them.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# Settings that change which token is chosen and that this engine does not implement: refused, never ignored.
_UNSUPPORTED = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "top_h": None,
    "exponential_decay_length_penalty": None,
    "sequence_bias": None,
    "num_return_sequences": 1,
}


@dataclass(frozen=True)
class Verdict:
    """What the full model made of one cycle's drafts.

    Attributes:
        accepted: (B,) leading draft tokens accepted per row, 0..lengths[b].
        next_tokens: (B,) the full model's token after them: a correction (accepted < lengths) or a bonus token.
    """

    accepted: torch.Tensor
    next_tokens: torch.Tensor


def stop_index(tokens: Sequence[int], eos_token_ids: Sequence[int], budget: int) -> int:
    """How many of a row's accepted tokens to emit: up to and including the first EOS, and at most `budget`."""
    for i, token in enumerate(tokens[:budget]):
        if token in eos_token_ids:
            return i + 1
    return min(len(tokens), budget)


class AcceptanceRule(ABC):
    """Chooses tokens from logits and judges drafts; every tensor is batched over rows."""

    @abstractmethod
    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) logits -> (B,) tokens."""

    @abstractmethod
    def propose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, V) draft logits -> (B,) draft tokens and their distribution q (B, V), or None if not needed."""

    @abstractmethod
    def judge(
        self, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, logits: torch.Tensor
    ) -> Verdict:
        """Judges drafts (B, D), of which lengths[b] are real, with their q (B, D, V) against the full model's
        logits (B, D + 1, V); logits[:, i] follows the context and drafts[:, :i]."""

    def confidence(self, logits: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        """(B,) top-1 probability of the draft distribution (q if the rule made one)."""
        probs = q if q is not None else torch.softmax(logits.float(), -1)
        return probs.max(-1).values


def _prefix_length(matches: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) count of leading True in matches (B, D), counting only the first lengths[b] positions."""
    real = torch.arange(matches.shape[1], device=matches.device) < lengths.unsqueeze(1)
    return (matches & real).long().cumprod(-1).sum(-1)


class GreedyAcceptance(AcceptanceRule):
    """Greedy decoding: the longest prefix equal to the full model's argmax, then its argmax token."""

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def propose(self, logits: torch.Tensor) -> tuple[torch.Tensor, None]:
        return logits.argmax(-1), None

    def judge(
        self, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, logits: torch.Tensor
    ) -> Verdict:
        target = logits.argmax(-1)  # (B, D + 1)
        accepted = _prefix_length(drafts == target[:, :-1], lengths)
        return Verdict(accepted, target.gather(1, accepted.unsqueeze(1)).squeeze(1))


class SpeculativeSampling(AcceptanceRule):
    """Lossless speculative sampling with p and q after the same logits warpers.

    Args:
        warpers: transformers logits warpers applied to the full model's and the draft's logits alike.
        generator: random number generator for every draw (None: torch's default one).
    """

    def __init__(self, warpers: LogitsProcessorList, generator: torch.Generator | None = None) -> None:
        self.warpers = warpers
        self.generator = generator

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., V) logits -> (..., V) probabilities after the warpers, in float32."""
        flat = logits.reshape(-1, logits.shape[-1]).float()
        return torch.softmax(self.warpers(None, flat), -1).reshape(logits.shape)

    def _sample(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        return self._sample(self.probs(logits))

    def propose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.probs(logits)
        return self._sample(q), q

    def judge(
        self, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, logits: torch.Tensor
    ) -> Verdict:
        B, D = drafts.shape
        p = self.probs(logits)  # (B, D + 1, V)
        if D:
            p_x = p[:, :D].gather(-1, drafts.unsqueeze(-1)).squeeze(-1)  # (B, D)
            q_x = q.gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
            u = torch.rand(B, D, device=p.device, generator=self.generator)
            accepted = _prefix_length(self.accepts(u, p_x, q_x), lengths)
        else:
            accepted = torch.zeros(B, dtype=torch.long, device=p.device)
        p_k = p.gather(1, accepted[:, None, None].expand(-1, 1, p.shape[-1])).squeeze(1)  # (B, V)
        # q at the first rejected position; zero where every real draft was accepted, so that the bonus comes from p
        q_full = torch.cat([q, q.new_zeros(B, 1, q.shape[-1])], 1) if D else p.new_zeros(B, 1, p.shape[-1])
        rejected = (accepted < lengths).unsqueeze(1)
        q_k = q_full.gather(1, accepted[:, None, None].expand(-1, 1, p.shape[-1])).squeeze(1) * rejected
        residual = (p_k - q_k).clamp(min=0)
        mass = residual.sum(-1, keepdim=True)
        residual = torch.where(mass > 0, residual / mass.clamp(min=torch.finfo(mass.dtype).tiny), p_k)
        return Verdict(accepted, self._sample(residual))

    def accepts(self, u: torch.Tensor, p_x: torch.Tensor, q_x: torch.Tensor) -> torch.Tensor:
        """(B, D) whether each draft passes its test u < p(x) / q(x), written without the division."""
        return u * q_x < p_x


def _setting(config: GenerationConfig, key: str):
    """A generation setting as transformers' generate reads it: the config's value, else transformers' default."""
    value = getattr(config, key, None)
    if value is None:
        # generate() fills unset values from these defaults (transformers 5), so an unset top_k still means 50
        value = GenerationConfig._get_default_generation_params().get(key)
    return value


def check_generation_config(config: GenerationConfig) -> None:
    """Refuses settings that this engine cannot honour, naming the setting."""
    if (_setting(config, "num_beams") or 1) > 1:
        raise ValueError(f"generation_config.num_beams={config.num_beams}: beam search is not supported by "
                         "speculative decoding here; set num_beams=1 (greedy or sampling)")
    for key, neutral in _UNSUPPORTED.items():
        value = getattr(config, key, None)
        if value is not None and value != neutral:
            raise ValueError(f"generation_config.{key}={value!r} is not supported by this decoding engine; "
                             f"set it to {neutral!r} (or leave it unset)")
    if not _setting(config, "do_sample"):
        return
    temperature, top_p, top_k = (_setting(config, k) for k in ("temperature", "top_p", "top_k"))
    if temperature is None or temperature <= 0:
        raise ValueError(f"generation_config.temperature={temperature} with do_sample=True: the temperature must be "
                         "> 0 (use do_sample=False for greedy decoding)")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"generation_config.top_p={top_p}: top_p must be in (0, 1]")
    if top_k is not None and top_k < 0:
        raise ValueError(f"generation_config.top_k={top_k}: top_k must be >= 0 (0 disables it)")
    min_p = getattr(config, "min_p", None)
    if min_p is not None and not 0.0 <= min_p <= 1.0:
        raise ValueError(f"generation_config.min_p={min_p}: min_p must be in [0, 1]")


def logits_warpers(config: GenerationConfig) -> LogitsProcessorList:
    """The sampling warpers transformers' generate applies for `config`, in its order."""
    temperature, top_k, top_p = (_setting(config, k) for k in ("temperature", "top_k", "top_p"))
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))
    if getattr(config, "min_p", None) is not None:
        warpers.append(MinPLogitsWarper(min_p=config.min_p))
    return warpers


def with_strategy(
    config: GenerationConfig, do_sample: bool, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> GenerationConfig:
    """A copy of `config` set to greedy decoding or to sampling with these settings (checked)."""
    config = copy.deepcopy(config)
    if do_sample:
        config.update(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    else:
        config.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    check_generation_config(config)
    return config


def acceptance_rule(config: GenerationConfig, generator: torch.Generator | None = None) -> AcceptanceRule:
    """The rule for a generation config: greedy unless `do_sample`, then speculative sampling."""
    check_generation_config(config)
    if not _setting(config, "do_sample"):
        return GreedyAcceptance()
    return SpeculativeSampling(logits_warpers(config), generator)
