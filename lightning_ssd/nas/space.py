"""The imitation-network search space (paper appendix B) and the mapping from one NNI sample to module arguments.

A search-space file is NNI's JSON format. Its top-level keys must be among `PARAMETERS`; a key left out is fixed at
the `ImitationNetwork` / `ImitationModule` default. Two keys are nested choices, so that a tuner never spends
samples on a setting that the chosen branch ignores:

    num_linear:  {"_name": 0} | {"_name": 1} | {"_name": 2, "width_multiplier": ..., "activation": ...}
    attention:   {"_name": false} | {"_name": true, "num_heads": ...}

(the width and the activation only exist between two linear layers; heads only with an attention layer). The
other keys take plain values: norm ("pre" | "post" | "none"), dropout (float), fusion ("average" | "concat" |
"attention"). Values are checked by the classes that use them, so a bad value fails its trial with their error.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.models.imitation import ImitationModule

PARAMETERS: tuple[str, ...] = ("num_linear", "attention", "norm", "dropout", "fusion")
# Keys a nested choice may carry next to "_name", by parameter.
_BRANCH_KEYS: dict[str, tuple[str, ...]] = {
    "num_linear": ("width_multiplier", "activation"),
    "attention": ("num_heads",),
}
DEFAULT_FUSION: str = inspect.signature(ImitationModule).parameters["fusion"].default


def network_defaults() -> dict[str, Any]:
    """`ImitationNetwork`'s keyword defaults (everything but `hidden_size`, which comes from the backbone)."""
    params = inspect.signature(ImitationNetwork).parameters
    return {name: p.default for name, p in params.items() if name != "hidden_size"}


@dataclass(frozen=True)
class Architecture:
    """One imitation-network candidate.

    Attributes:
        imitation: every `ImitationNetwork` keyword argument but `hidden_size`, defaults filled in, so that an
            exported config pins the trained architecture whatever the base config says.
        fusion: the fusion strategy of the cosine target (`ImitationModule.fusion`).
    """

    imitation: dict[str, Any]
    fusion: str


def _check_branch(name: str, option: Mapping[str, Any], where: str) -> None:
    if name not in _BRANCH_KEYS:
        raise ValueError(f"{where}parameter {name!r} takes plain values, not nested choices")
    if "_name" not in option:
        raise ValueError(f"{where}parameter {name!r}: a nested choice needs '_name', got {dict(option)}")
    unknown = sorted(set(option) - {"_name", *_BRANCH_KEYS[name]})
    if unknown:
        raise ValueError(f"{where}parameter {name!r}: unknown key(s) {unknown} in a nested choice; allowed: "
                         f"{['_name', *_BRANCH_KEYS[name]]}")


def _branch(name: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """A nested choice's sample -> (chosen value, its sub-parameters); a plain value is accepted as well."""
    if not isinstance(value, Mapping):
        return value, {}
    _check_branch(name, value, "search-space ")
    return value["_name"], {k: v for k, v in value.items() if k != "_name"}


def architecture_from_params(params: Mapping[str, Any]) -> Architecture:
    """The candidate that one NNI parameter sample (`nni.get_next_parameter()`) stands for."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown search-space parameter(s) {unknown}; known: {list(PARAMETERS)}")
    imitation, fusion = network_defaults(), DEFAULT_FUSION
    for name, value in params.items():
        chosen, extra = _branch(name, value)
        if name == "fusion":
            fusion = chosen
        else:
            imitation[name] = chosen
            imitation.update(extra)
    return Architecture(imitation=imitation, fusion=fusion)


def load_search_space(path: str | Path) -> dict[str, Any]:
    """Reads an NNI search-space JSON file and checks its parameter names against `PARAMETERS`."""
    path = Path(path)
    try:
        space = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"search space {path}: cannot read it as JSON ({err})") from err
    if not isinstance(space, dict) or not space:
        raise ValueError(f"search space {path}: expected a non-empty JSON object of parameters")
    unknown = sorted(set(space) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"search space {path}: unknown parameter(s) {unknown}; known: {list(PARAMETERS)}")
    for name, spec in space.items():
        if not isinstance(spec, dict) or "_type" not in spec or "_value" not in spec:
            raise ValueError(f"search space {path}: parameter {name!r} needs '_type' and '_value', got {spec!r}")
        for option in spec["_value"] if spec["_type"] == "choice" else ():
            if isinstance(option, dict):
                _check_branch(name, option, f"search space {path}: ")
    return space
