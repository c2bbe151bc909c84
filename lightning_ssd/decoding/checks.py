"""Validators of the draft settings and decoding modes, shared by the decoders, the LightningModules and the tools.

Each takes `setting`, the name the user typed (`n`, `model.init_args.n`, `--n`), and puts it first in its error, so
that the same check reads right from Python, from a config and from a command line. The errors are `UsageError`s
(a `ValueError`): a value the user set that cannot work, which `python -m lightning_ssd` reports as one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_ssd.errors import UsageError

# names follow the paper's table rows; see `factory.py`
MODES: tuple[str, ...] = ("full", "draft", "draft_imit", "ssd", "draft_verify")
POLICIES: tuple[str, ...] = ("dynamic", "adaptive")


def check_exit_layer(n: int, num_layers: int, setting: str = "n") -> None:
    """The draft exit layer n must leave at least one layer to verify: 1 <= n <= L - 1."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_layers - 1:
        raise UsageError(f"{setting}={n}: the draft exit layer must be in [1, L-1] = [1, {num_layers - 1}] for this "
                         f"backbone (L={num_layers})")


def check_trained_exit_layer(n: int | None, trained: int, setting: str, source: str,
                             error: type[ValueError] = UsageError) -> None:
    """A trained imitation network reads the layer it was trained at: a given n (None: not given) must be that one."""
    if n is not None and n != trained:
        raise error(f"{setting}={n}, but {source} reads layer n={trained}; set {setting} to {trained}, or train an "
                    f"imitation network for n={n}")


def check_confidence_threshold(threshold: float | None, setting: str = "confidence_threshold") -> None:
    """A draft confidence threshold is a probability, or None for none."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"draft {setting} must be in [0, 1] or None, got {threshold}")


def check_imitation_width(width: int | None, hidden_size: int) -> None:
    """An imitation network reads and writes states of the backbone's width."""
    if width != hidden_size:
        raise UsageError(f"imitation network width {width} does not match the backbone hidden size {hidden_size}; "
                         "train or load an imitation network for this backbone")


def parse_draft(value: object, setting: str = "draft", policies: Sequence[str] = POLICIES) -> object:
    """d or its policy from a user setting: an int d >= 1 (also as text, "6"), or one of `policies` by name.

    Schedule and policy objects are returned as they are (they check themselves when built).
    """
    named = "".join(f" or {p!r}" for p in policies)
    if isinstance(value, str):
        if value in policies:
            return value
        if not value.isdigit():
            raise UsageError(f"{setting} must be an integer d >= 1{named}, got {value!r}")
        value = int(value)
    if isinstance(value, bool):
        raise UsageError(f"{setting} must be an integer d >= 1{named}, got {value!r}")
    if isinstance(value, int) and value < 1:
        raise UsageError(f"{setting}={value}: d must be >= 1 (an integer d >= 1{named})")
    return value


def check_modes(modes: Sequence[str], has_imitation: bool, n: int | None, setting: str = "eval_modes"
                ) -> tuple[str, ...]:
    """Decoding modes that exist and that the draft settings can run: those past "full" need n, "draft_imit" an
    imitation network."""
    if not modes:
        raise UsageError(f"{setting} is empty; give at least one of {', '.join(MODES)}, or null for the stage's "
                         "default")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"{setting}: unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    if not has_imitation and "draft_imit" in modes:
        raise UsageError(f"{setting}: 'draft_imit' needs an imitation network; none was given")
    if n is None and any(m not in ("full", "draft_verify") for m in modes):
        raise UsageError(f"{setting} {list(modes)} decode with a draft model: set n (the draft exit layer)")
    return tuple(modes)
