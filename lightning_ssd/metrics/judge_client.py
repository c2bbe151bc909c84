"""The chat model that judges open-ended answers: an interface, and a client for OpenAI-compatible servers.

`OpenAICompatibleJudge` is built on the `openai` package (`pip install 'lightning_ssd[judge]'`), which speaks to
OpenAI and to every server with the same API (vLLM, llama.cpp, ...). Retries are left to the metric, which counts
a sample as failed only after its own attempts; errors that no retry can fix (a rejected key, an unknown model or
URL) stop the judging at once.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

Messages = list[dict[str, str]]
NO_KEY = "EMPTY"  # what the openai client sends to servers that need no key (its own convention)


class JudgeError(RuntimeError):
    """The judge cannot work at all (bad URL, rejected key, unknown model): no sample is worth retrying."""


class JudgeRequestError(RuntimeError):
    """One request failed (timeout, server error, malformed reply); the sample may be retried."""


class ChatJudge(ABC):
    """A chat model that answers a list of ``{"role", "content"}`` messages with text."""

    @abstractmethod
    def complete(self, messages: Messages) -> str:
        """Returns the reply text; raises :class:`JudgeRequestError` or :class:`JudgeError` on failure."""


class OpenAICompatibleJudge(ChatJudge):
    """Judge behind an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, ...).

    Args:
        base_url: server root, with or without the trailing ``/v1`` (``http://127.0.0.1:8000`` or
            ``https://api.openai.com/v1``).
        model: model name sent in the request.
        api_key_env: environment variable holding the API key; if it is unset, the placeholder key ``EMPTY`` is
            sent (local servers). The key itself never appears in a config or a log.
        timeout_s: timeout of one request in seconds.
        temperature: sampling temperature; 0 for reproducible judgements.
        max_tokens: reply length limit.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"OpenAICompatibleJudge: base_url must start with http:// or https://, got {base_url!r}")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else f"{root}/v1"
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _client(self):
        try:
            import openai
        except ImportError as err:
            raise JudgeError("OpenAICompatibleJudge needs the openai package: pip install 'lightning_ssd[judge]'") \
                from err
        key = os.environ.get(self.api_key_env) or NO_KEY
        return openai, openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0)

    def complete(self, messages: Messages) -> str:
        openai, client = self._client()
        try:
            reply = client.chat.completions.create(model=self.model, messages=messages,
                                                   temperature=self.temperature, max_tokens=self.max_tokens)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            # wrong key, URL or model: every request would fail alike
            hint = f" (is ${self.api_key_env} set and valid?)" if err.status_code in (401, 403) else ""
            raise JudgeError(f"judge {self.url} (model {self.model!r}) answered HTTP {err.status_code}{hint}: "
                             f"{_detail(err)}") from None
        except openai.APIStatusError as err:
            raise JudgeRequestError(f"judge {self.url} answered HTTP {err.status_code}: {_detail(err)}") from err
        except openai.APIConnectionError as err:  # refused, timed out, cut off
            raise JudgeRequestError(f"judge {self.url} could not be reached: {err}") from err
        except ValueError as err:  # a body that is not JSON
            raise JudgeRequestError(f"judge {self.url} sent no chat completion: {err}") from err
        content = reply.choices[0].message.content if reply.choices else None
        if not isinstance(content, str):
            raise JudgeRequestError(f"judge {self.url} sent no chat completion text: {reply!r:.300}")
        return content


def _detail(err) -> str:
    return err.response.text[:300] if getattr(err, "response", None) is not None else str(err)[:300]
