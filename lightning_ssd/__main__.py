"""`python -m lightning_ssd <subcommand>`: Lightning's fit/validate/test/predict plus the project's own tools."""

from __future__ import annotations

import sys

from lightning_ssd.errors import VERBOSE_HELP, UsageError, reported, verbose_requested

# the project's own tools: module, one line of help
_TOOLS = {
    "generate": ("lightning_ssd.tools.generate", "SSD over your own images (folder, glob or JSONL), written as JSONL"),
    "bench": ("lightning_ssd.tools.bench", "decoding speed of every method on one model, as JSON and a table"),
    "bench-stream": ("lightning_ssd.tools.bench_stream",
                     "a request stream through continuous batching (plain vs SSD), and cost against output length"),
    "serve": ("lightning_ssd.tools.serve",
              "an OpenAI-compatible chat server: SSD with continuous batching, streaming, safe by default"),
    "bench-serve": ("lightning_ssd.tools.bench_serve",
                    "concurrent clients against the server, SSD vs --mode greedy: tokens/s, latency, TTFT, memory"),
    "demo": ("lightning_ssd.tools.demo", "the embedded default end to end, offline, and its results table"),
    "choose-n": ("lightning_ssd.tools.choose_n", "pick the draft exit layer n on validation data"),
    "export-draft": ("lightning_ssd.tools.export_draft", "write a trained draft as a shareable folder (safetensors)"),
    "reproduce": ("lightning_ssd.tools.reproduce", "the paper's tables and figures on the embedded benchmark"),
}
_STAGES = {
    "fit": "train a stage (fine-tuning, imitation, mixed) from a LightningCLI config",
    "validate": "run a config's validation loop (decoding evaluation, choosing n)",
    "test": "decode a test split with every configured method and score it",
    "predict": "generate outputs for a split",
}


def _usage() -> str:
    rows = [*_STAGES.items(), *((name, text) for name, (_, text) in _TOOLS.items())]
    width = max(len(name) for name, _ in rows)
    lines = ["usage: python -m lightning_ssd <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:{width}}  {text}" for name, text in rows]
    lines += ["", "python -m lightning_ssd <subcommand> --help describes each one's options.",
              f"An error you can fix prints one line; --verbose: {VERBOSE_HELP}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    verbose, args = verbose_requested(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return
    command = args[0]
    with reported(command, verbose):
        if command in _TOOLS:
            import importlib

            importlib.import_module(_TOOLS[command][0]).main(args[1:])
            return
        if command not in _STAGES and not command.startswith("-"):
            raise UsageError(f"unknown subcommand {command!r}; choose one of {', '.join([*_STAGES, *_TOOLS])} "
                             "(python -m lightning_ssd --help describes them)")
        from lightning_ssd.cli import cli_main

        if argv is None:
            sys.argv[1:] = args  # LightningCLI reads sys.argv itself; DDP ranks restart from it, --verbose removed
            cli_main()
        else:
            cli_main(args)


if __name__ == "__main__":
    main()
