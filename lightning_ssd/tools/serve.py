"""`python -m lightning_ssd serve`: an OpenAI-compatible chat-completions server, SSD with continuous batching.

    python -m lightning_ssd serve --backbone runs/demo/finetune/backbone --draft-head runs/demo/draft --port 8000

Clients: the `openai` Python client (base_url http://127.0.0.1:8000/v1) or curl; images as base64 data: URLs.
It listens on 127.0.0.1 unless --host says otherwise, refuses remote image URLs and local paths outside
--image-root, and caps body size, image pixels, max_tokens and the queue (see docs/serving.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from lightning_ssd.errors import ToolParser, UsageError
from lightning_ssd.threads import add_threads_argument

API_KEY_ENV = "LIGHTNING_SSD_API_KEY"


def _parser() -> argparse.ArgumentParser:
    from lightning_ssd.serving.limits import Limits

    d = Limits()
    p = ToolParser(prog="python -m lightning_ssd serve", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="backbone checkpoint folder or preset name")
    p.add_argument("--draft-head", help="imitation checkpoint (.ckpt) or draft folder (export-draft); its n is used")
    p.add_argument("--n", type=int, default=None,
                   help="without --draft-head: draft from layer n through the final norm and head (plain early exit; "
                        "default L // 4)")
    p.add_argument("--mode", choices=["ssd", "greedy"], default="ssd",
                   help="ssd: self-speculative decoding; greedy: the full model alone (the baseline)")
    p.add_argument("--draft", default="6", help="draft tokens per cycle d, 'dynamic' (paper eq. 5) or 'adaptive' "
                                                "(from the live requests' acceptance and the measured cost of a "
                                                "cycle)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on: 127.0.0.1 (default, this machine only), 0.0.0.0 or '::' (every "
                        "interface: set --api-key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-size", type=int, default=d.max_live_rows, help="requests decoded at once (rows)")
    p.add_argument("--prefill-batch", type=int, default=1,
                   help="while requests decode, admit queued ones only once this many rows are free, so that they "
                        "share one prefill pass (at most --max-batch-size; 1: as soon as a row frees)")
    p.add_argument("--compile", action="store_true",
                   help="run the decoder's layer ranges through torch.compile, compiled at start-up before requests "
                        "are taken (minutes; on CPU it pays at batch 1 only: docs/engine.md)")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="requests waiting for a row; beyond that, 429 with Retry-After")
    p.add_argument("--max-tokens-cap", type=int, default=d.max_tokens_cap,
                   help="the largest max_tokens a request may ask for (and the default)")
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens,
                   help="the longest prompt, image placeholders included (sizes the key/value cache)")
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20, help="request body size limit")
    p.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, help="width x height limit")
    p.add_argument("--api-key", default=None,
                   help=f"require this key from clients (default: ${API_KEY_ENV} if set; else no key)")
    p.add_argument("--image-root", default=None,
                   help="serve local image paths inside this folder (default: local paths are refused)")
    p.add_argument("--model-name", default=None, help="model id in /v1/models and responses (default: the backbone)")
    p.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--devices", type=int, default=1, help="with --accelerator cuda: GPUs to serve on (LitServe's)")
    p.add_argument("--workers", type=int, default=1,
                   help="inference workers per device (LitServe's workers_per_device), each with its own copy of the "
                        "model and its own --max-batch-size rows; on CPU give each its --threads")
    add_threads_argument(p)
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def _check(args: argparse.Namespace) -> None:
    # not `checks.draft_length`: its parser lives in lightning_ssd.decoding, which imports torch, and this process
    # serves HTTP without it; the worker reads the setting again with `parse_draft` when it builds its DraftSpec
    if args.draft not in ("dynamic", "adaptive") and (not args.draft.isdigit() or int(args.draft) < 1):
        raise UsageError(f"--draft must be an integer d >= 1, 'dynamic' or 'adaptive', got {args.draft!r}")
    if not 1 <= args.prefill_batch <= args.max_batch_size:
        raise UsageError(f"--prefill-batch must be in [1, --max-batch-size] = [1, {args.max_batch_size}], got "
                         f"{args.prefill_batch}")
    if args.mode == "greedy" and (args.draft_head or args.n is not None):
        raise UsageError("--mode greedy serves the full model alone: drop --draft-head and --n")
    if args.draft_head and args.n is not None:
        raise UsageError("--n is for the plain early exit; a --draft-head carries its own n: give one of them")
    if args.host not in ("127.0.0.1", "0.0.0.0", "::"):
        raise UsageError(f"--host must be 127.0.0.1, 0.0.0.0 or '::' (LitServe binds these), got {args.host!r}")
    if args.workers < 1 or args.devices < 1:
        raise UsageError(f"--workers and --devices must be >= 1, got {args.workers} and {args.devices}")
    if args.devices > 1 and args.accelerator != "cuda":
        raise UsageError("--devices is for --accelerator cuda; on CPU, serve more workers with --workers")
    if not 1024 <= args.port <= 65535:
        raise UsageError(f"--port must be in [1024, 65535], got {args.port}")
    if args.draft_head and not Path(args.draft_head).exists():
        raise UsageError(f"--draft-head {args.draft_head} not found (a .ckpt or a draft folder from export-draft)")
    _check_family(args.backbone)


def _check_family(backbone: str) -> None:
    """Refuses what the engine cannot serve before any process starts (the worker checks again once loaded).

    Reads only the checkpoint's config.json: importing the model code here would add seconds to the start-up of
    the HTTP process, which needs none of it. A preset name is checked by the worker, which builds it.
    """
    from lightning_ssd.serving.api import check_family

    if "/" not in backbone and not Path(backbone).exists():
        family = "blip2-t5" if backbone.endswith("blip2-t5") else "preset"
    else:
        config = Path(backbone) / "config.json"
        if not config.is_file():
            raise UsageError(f"--backbone {backbone} is neither a preset name nor a checkpoint folder with a "
                             "config.json")
        text_config = json.loads(config.read_text()).get("text_config") or {}
        family = "blip2-t5" if text_config.get("model_type") == "t5" else "other"
    try:
        check_family(family, backbone)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_server(args: argparse.Namespace):
    """The LitServer for parsed `serve` arguments (not started)."""
    import litserve as ls

    from lightning_ssd.serving.api import ServeConfig, SSDChatAPI
    from lightning_ssd.serving.limits import Limits

    workers = args.devices * args.workers
    try:
        limits = Limits(max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
                        max_tokens_cap=args.max_tokens_cap, max_prompt_tokens=args.max_prompt_tokens,
                        max_live_rows=args.max_batch_size, max_queue=args.max_queue,
                        image_root=Path(args.image_root) if args.image_root else None, workers=workers)
    except ValueError as exc:
        raise UsageError(f"serve: {exc}") from None
    config = ServeConfig(
        backbone=args.backbone, draft_head=args.draft_head, n=args.n, mode=args.mode,
        draft=args.draft if args.draft in ("dynamic", "adaptive") else int(args.draft),
        prefill_batch=args.prefill_batch, compile=args.compile, limits=limits,
        model_name=args.model_name or Path(args.backbone).name, api_key=args.api_key or os.environ.get(API_KEY_ENV),
        threads=args.threads, workers=workers, address=f"http://{args.host}:{args.port}/v1")
    return ls.LitServer(SSDChatAPI(config), accelerator=args.accelerator, devices=args.devices,
                        workers_per_device=args.workers, timeout=False, disable_openapi_url=True,
                        model_metadata={"model": config.model_name})


_MAIN_PID = os.getpid()


def _interrupt(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # LitServe's HTTP process inherits the handler; uvicorn re-raises it once done
        raise SystemExit(0)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _check(args)
    server = build_server(args)
    # SIGTERM (a service manager, a test's teardown) shuts down as Ctrl+C does: LitServe then stops its workers
    signal.signal(signal.SIGTERM, _interrupt)
    server.run(host=args.host, port=args.port, num_api_servers=1, generate_client_file=False,
               log_level=args.log_level)


if __name__ == "__main__":
    main()
