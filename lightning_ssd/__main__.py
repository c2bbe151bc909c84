"""`python -m lightning_ssd <subcommand>`: Lightning's fit/validate/test/predict plus the project's own tools."""

from __future__ import annotations

import sys

_TOOLS = {
    "bench": "lightning_ssd.tools.bench",
    "demo": "lightning_ssd.tools.demo",
    "choose-n": "lightning_ssd.tools.choose_n",
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _TOOLS:
        import importlib

        importlib.import_module(_TOOLS[args[0]]).main(args[1:])
        return
    from lightning_ssd.cli import cli_main

    cli_main(argv)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    main()
