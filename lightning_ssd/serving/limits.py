"""Every limit the server enforces, with its default, in one place.

The defaults are safe for a server reachable by others: a request is refused (a 4xx naming the field) before it
touches the model when it is too big, asks for more than the server will do, or points at something the server must
not read. None of them can be turned off from a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much work the server takes on.

    Attributes:
        max_body_bytes: request body size (413 above it); a base64 image is ~4/3 of its file size.
        max_image_pixels: width x height of the decoded image (decompression bombs: a small PNG can claim
            a huge canvas); checked from the header, before the pixels are decoded.
        max_tokens_cap: the largest `max_tokens` a request may set; also the default when it sets none.
        max_prompt_tokens: prompt length (text and image placeholders) a request may reach; with
            `max_tokens_cap` it sizes each row's preallocated key/value cache.
        max_live_rows: requests decoded at once by each inference worker (its engine's rows).
        max_queue: requests waiting for a row; beyond rows + queue a request gets 429 with Retry-After.
        workers: inference workers, each with `max_live_rows` rows.
        max_stop: stop strings per request (as OpenAI's API).
        max_messages: messages per request.
        max_text_chars: characters of text over all messages.
        image_root: local image paths are read only inside this folder; None: no local paths at all.
    """

    max_body_bytes: int = 20 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_tokens_cap: int = 256
    max_prompt_tokens: int = 2048
    max_live_rows: int = 8
    max_queue: int = 64
    max_stop: int = 4
    max_messages: int = 32
    max_text_chars: int = 32_000
    image_root: Path | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_pixels", "max_tokens_cap", "max_prompt_tokens", "max_live_rows",
                     "max_stop", "max_messages", "max_text_chars", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.image_root is not None and not Path(self.image_root).is_dir():
            raise ValueError(f"--image-root {self.image_root} is not a folder")

    @property
    def max_in_flight(self) -> int:
        """Requests the server holds at once (decoding or queued); one more gets 429."""
        return self.workers * self.max_live_rows + self.max_queue
