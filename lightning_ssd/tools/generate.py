r"""`python -m lightning_ssd generate`: SSD (or plain decoding) over your own images, written as JSONL.

    python -m lightning_ssd generate --backbone runs/demo/finetune/backbone \
        --draft-head runs/demo/draft --images photos/ --output captions.jsonl

--images is a folder (searched recursively; files that are not images are ignored), a glob pattern, or a .jsonl
file of {"image": path, "prompt": text, "id": any} lines. Each output line carries id, image (the path as found),
prompt (as given; null for an image without one, which is captioned), text, tokens and, for SSD, tau and the
drafts accepted in each cycle. An image that cannot be read is named on stderr and skipped. Greedy SSD writes
exactly the tokens of `--mode greedy`, which are the backbone's own `generate` output. The output file appears
only once every image is done.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lightning_ssd.errors import ToolParser, UsageError, at_least
from lightning_ssd.threads import add_threads_argument, set_threads
from lightning_ssd.tools import checks


def _parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="python -m lightning_ssd generate", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="backbone checkpoint folder (or preset name)")
    p.add_argument("--draft-head", help="imitation checkpoint (.ckpt) or draft folder (export-draft); needed for ssd")
    p.add_argument("--images", required=True, help="folder, glob pattern or .jsonl of {image, prompt, id}")
    p.add_argument("--prompt", default=None, help="instruction for every image (default: caption them)")
    p.add_argument("--output", required=True, help="JSONL file to write")
    p.add_argument("--mode", choices=["ssd", "greedy"], default="ssd",
                   help="ssd: self-speculative decoding; greedy: the full model alone (same tokens when greedy)")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="images decoded together in one batch")
    p.add_argument("--max-new-tokens", type=at_least(1), default=64,
                   help="most tokens generated per image (fewer where it ends on its own)")
    p.add_argument("--draft", default="6", help="draft tokens per cycle d, or 'dynamic' (paper eq. 5)")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding (lossless for SSD)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    p.add_argument("--top-k", type=int, default=0, help="0: off")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling's probability mass; 1.0: off")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default="cpu", help="torch device to decode on: cpu, cuda, cuda:1, ...")
    add_threads_argument(p)
    return p


def _check(args: argparse.Namespace) -> None:
    """Every flag that can be checked before a model loads: the flags alone first, then the files they name."""
    args.draft = checks.draft_length(args.draft)
    checks.sampling(args.do_sample, args.temperature, args.top_k, args.top_p)
    if args.mode == "ssd" and not args.draft_head:
        raise UsageError("--mode ssd needs --draft-head (an imitation checkpoint or a draft folder); or use "
                         "--mode greedy")
    checks.output_file(args.output)
    checks.device(args.device)
    if args.draft_head:
        checks.draft_source(args.draft_head, "--draft-head")
    checks.backbone(args.backbone)


def _read_images(requests, log):
    """(prompt as given, record, image) for every readable image; the others are named on stderr and counted."""
    from lightning_ssd.data.io import load_image

    kept, skipped = [], 0
    for asked, record in requests:
        try:
            kept.append((asked, record, load_image(record.image)))
        except (OSError, ValueError) as exc:
            skipped += 1
            log(f"skipped {record.image}: {exc}")
    return kept, skipped


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _check(args)
    from lightning_ssd.data.readers.images import load_image_records, task_of, with_instruction

    records = load_image_records(args.images, args.prompt, require_images=False, source="--images")
    threads = set_threads(args.threads)
    import torch
    from tqdm.auto import tqdm

    log = lambda s: tqdm.write(s, file=sys.stderr)  # noqa: E731  (a line of its own, not inside the progress bar)

    from lightning_ssd.backbones import load_backbone, load_processor
    from lightning_ssd.backbones.vlm import vision_inputs
    from lightning_ssd.data.collate import VLCollator
    from lightning_ssd.data.readers.base import Sample
    from lightning_ssd.decoding.acceptance import with_strategy
    from lightning_ssd.decoding.factory import build_decoder
    from lightning_ssd.decoding.generate import generate
    from lightning_ssd.decoding.result import GenerationResult
    from lightning_ssd.files import atomic_open
    from lightning_ssd.models.checkpoint import load_draft_spec

    device = torch.device(args.device)
    vlm = load_backbone(args.backbone).to(device)
    processor = load_processor(args.backbone)
    spec = None
    if args.mode == "ssd":
        spec = load_draft_spec(args.draft_head, vlm, args.draft, prefix="--", backbone=args.backbone,
                               source="draft-head")
        spec.imitation.to(device)
    decoder = build_decoder("ssd" if args.mode == "ssd" else "full", vlm.decoder, vlm.eos_token_id, spec)
    config = with_strategy(vlm.model.generation_config, args.do_sample, args.temperature, args.top_k, args.top_p)
    generator = torch.Generator(device).manual_seed(args.seed) if args.do_sample else None

    collate = VLCollator(processor, vlm.family, task_of(records))
    # the output names the prompt each image was given; one without is decoded with the caption instruction
    requests = list(zip([r.query for r in records], with_instruction(records), strict=True))
    tokenizer = processor.tokenizer
    output = Path(args.output)
    written = skipped = num_tokens = 0
    decode_s, results = 0.0, []
    with atomic_open(output) as f, tqdm(total=len(records), desc="generate", unit="img") as bar:
        for start in range(0, len(requests), args.batch_size):
            chunk = requests[start : start + args.batch_size]
            kept, bad = _read_images(chunk, log)
            skipped += bad
            bar.update(len(chunk))
            if not kept:
                continue
            batch = collate([Sample(image, record) for _, record, image in kept])
            images = {key: value.to(device) for key, value in vision_inputs(batch).items()}
            out = generate(vlm, decoder, input_ids=batch["prompt_input_ids"].to(device),
                           attention_mask=batch["prompt_attention_mask"].to(device),
                           max_new_tokens=args.max_new_tokens, generation_config=config, generator=generator,
                           **images)
            texts = tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
            for (asked, record, _), seq, text in zip(kept, out.sequences, texts, strict=True):
                line = {"id": record.sample_id, "image": str(record.image), "prompt": asked,
                        "text": text.strip(), "tokens": list(seq.tokens)}
                if args.mode == "ssd":
                    line.update(seq.acceptance_record())
                f.write(json.dumps(line) + "\n")
            written += len(kept)
            num_tokens += out.num_tokens
            decode_s += out.prefill_time_s + out.decode_time_s
            results.append(out)
        if written == 0:  # raised inside the block: the temporary file goes, an earlier output stays
            raise UsageError(f"--images {args.images}: no image could be read (each is named above); {output} was "
                             "not written")
    summary = f"{written} images, {skipped} skipped, {num_tokens} tokens at {num_tokens / max(decode_s, 1e-9):.1f}/s"
    if args.mode == "ssd" and results:
        merged = GenerationResult(tuple(s for r in results for s in r.sequences))
        summary += f", tau {merged.mean_accepted_length:.2f}, alpha {merged.acceptance_rate:.3f}"
    print(f"{summary} on {threads} CPU thread{'s' if threads > 1 else ''}; wrote {output}")


if __name__ == "__main__":
    main()
