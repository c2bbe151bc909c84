"""The open question of the draft-to-full size ratio: a grid of exit layer n x imitation capacity.

On the long-answer block's backbone (base-llava, L = 24), an imitation network is trained at every n of `grid_ns`
for every capacity of `CAPACITIES` (`grid_epochs` each), and the first `grid_images` long-answer test images are
decoded, per n, by plain greedy decoding (the reference), and by SSD and the draft alone with each capacity (and with
no imitation network at all). The draft's cost grows with n and with the network's size; its acceptance too. The
record keeps each cell's speedup, tau, alpha, the draft's own CIDEr, the network's trainable parameters and the NAS
search's reward (`nas.reward.draft_reward`: the cost model's predicted speedup at the cell's measured alpha).
"""

from __future__ import annotations

import copy
from pathlib import Path

from lightning_ssd.backbones import SplitVLM, load_backbone, load_processor
from lightning_ssd.decoding.cost import measure_cost_model
from lightning_ssd.decoding.factory import build_decoder
from lightning_ssd.decoding.generate import BatchDecoder
from lightning_ssd.decoding.spec import DraftSpec
from lightning_ssd.models.checkpoint import load_imitation_network
from lightning_ssd.nas.reward import draft_reward
from lightning_ssd.reproduce.decode_eval import evaluate_decoders, split_batches
from lightning_ssd.reproduce.plan import atomic_write_json
from lightning_ssd.reproduce.settings import Settings

NO_IMITATION = "none"
_NET = "--model.init_args.imitation.init_args."
# capacity -> the imitation stage's overrides of experiments/_base/imitation.yaml (attention, 2 linear, width 2)
CAPACITIES: dict[str, tuple[str, ...]] = {
    "1 linear": (f"{_NET}num_linear=1", f"{_NET}width_multiplier=1.0", f"{_NET}attention=false"),
    "2 linear": (f"{_NET}num_linear=2", f"{_NET}width_multiplier=1.0", f"{_NET}attention=false"),
    "attention + 2 linear": (f"{_NET}num_linear=2", f"{_NET}width_multiplier=1.0", f"{_NET}attention=true"),
    "attention + 2 linear, width x2": (f"{_NET}num_linear=2", f"{_NET}width_multiplier=2.0",
                                       f"{_NET}attention=true"),
}
LABELS: tuple[str, ...] = (NO_IMITATION, *CAPACITIES)


def slug(capacity: str) -> str:
    """A folder and mode name for a capacity: "attention + 2 linear" -> "attention_2_linear"."""
    return "_".join(w for w in capacity.replace(",", " ").replace("+", " ").split())


def run_grid_test(backbone: Path, checkpoints: dict[str, Path], n: int, settings: Settings, data: dict,
                  max_new_tokens: int, out: Path) -> None:
    """Decodes the first `grid_images` test images with greedy decoding, and SSD and the draft alone for no imitation
    and each capacity of `checkpoints` at exit n; writes out (JSON with each capacity's parameters)."""
    s = settings
    vlm = load_backbone(str(backbone)).eval()
    nets = {cap: load_imitation_network(path, vlm).eval() for cap, path in checkpoints.items()}
    eos = vlm.eos_token_id

    def decoders(model: SplitVLM) -> dict[str, BatchDecoder]:
        dtype = next(model.parameters()).dtype
        found = {"full": build_decoder("full", model.decoder, eos),
                 f"ssd_{NO_IMITATION}": build_decoder("ssd", model.decoder, eos, DraftSpec(n, None, s.draft)),
                 f"draft_{NO_IMITATION}": build_decoder("draft", model.decoder, eos, DraftSpec(n))}
        for cap, net in nets.items():
            imit = copy.deepcopy(net).to(dtype)
            found[f"ssd_{slug(cap)}"] = build_decoder("ssd", model.decoder, eos, DraftSpec(n, imit, s.draft))
            found[f"draft_{slug(cap)}"] = build_decoder("draft_imit", model.decoder, eos, DraftSpec(n, imit))
        return found

    batches = split_batches(backbone, s, "test", images=s.grid_images, **data)
    result = evaluate_decoders(vlm, decoders, batches, load_processor(str(backbone)).tokenizer, max_new_tokens)
    params = {cap: sum(p.numel() for p in net.parameters()) for cap, net in nets.items()} | {NO_IMITATION: 0}
    reward = {}
    for cap in LABELS:  # the NAS search's reward at each cell's measured alpha (the search measures it on val)
        alpha = result["metrics"].get(f"test/ssd_{slug(cap)}/alpha", float("nan"))
        cost, _ = measure_cost_model(vlm.decoder, n, nets.get(cap))
        reward[cap] = draft_reward(cost, alpha, s.draft).speedup if 0.0 <= alpha <= 1.0 else float("nan")
    atomic_write_json(out, {**result, "n": n, "L": vlm.decoder.num_layers, "d": s.draft, "params": params,
                            "reward": reward,
                            "capacities": list(LABELS), "images": sum(len(b["references"]) for b in batches)})
