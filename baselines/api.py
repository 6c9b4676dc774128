"""General-purpose LLMs behind an OpenAI-compatible chat-completions API, given the sequence as text.

    sepit bench --model api --model_args '{"model": "gpt-4o-mini", "sequence_format": "raw"}' --tasks sp14 ...

The key comes from `api_key` or the environment variable named by `api_key_env` (OPENAI_API_KEY); it is sent
in the Authorization header and nowhere else: not in the cache, errors, fingerprints or results (bench masks
model arguments named like credentials). Every answer is cached on disk under its request, so a re-run (or a
resumed one) never pays for the same request twice. Failed requests (HTTP 429, 5xx, network errors) are
retried with exponential backoff, honouring Retry-After; others fail at once with the server's message.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from sepit.cache import cache_dir as default_cache_dir
from sepit.data.files import atomic_open
from sepit.data.protein import ESM2_WINDOW
from sepit.data.sample import InstructionSample
from sepit.models.formatters import check_format, sequence_prompt
from sepit.interface import GenerationConfig, ModelCard, ProteinLLM

DEFAULT_SYSTEM_PROMPT = ("You are an expert in protein biology. Answer the question about the given protein "
                         "sequence concisely.")
RETRIED_STATUS = (408, 409, 429, 500, 502, 503, 504)


class ApiError(OSError):
    """A request that failed for good; the message says where, why, and what to check."""


class ApiModel(ProteinLLM):
    """One chat-completions request per sample, cached, retried and rate limited."""

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", sequence_format: str = "raw",
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, max_residues: int = ESM2_WINDOW,
                 max_retries: int = 4, retry_wait: float = 2.0, requests_per_minute: float = 60.0,
                 timeout: float = 120.0, cache_dir: str | None = None, name: str | None = None):
        """
        Args:
            model: the model name the API expects.
            base_url: the API root; `/chat/completions` is appended.
            api_key: the key (prefer api_key_env: a key in a command line ends up in shell history).
            api_key_env: the environment variable holding the key; no key sends no Authorization header.
            sequence_format: how the sequence is written into the prompt (sepit.models.formatters).
            system_prompt: the system message (None: none).
            max_residues: residues written into the prompt (the shared 1022-residue crop by default).
            max_retries: retries after a failed request (429, 5xx, network errors).
            retry_wait: seconds before the first retry; doubled each time.
            requests_per_minute: the most requests sent per minute.
            timeout: seconds to wait for one response.
            cache_dir: where answers are cached (default $SEPIT_CACHE/api).
            name: the name in results (default api:<model>).
        """
        self.model, self.url = model, base_url.rstrip("/") + "/chat/completions"
        self.key = api_key or os.environ.get(api_key_env) or None
        self.sequence_format, self.system_prompt, self.max_residues = sequence_format, system_prompt, max_residues
        self.max_retries, self.retry_wait, self.timeout = max_retries, retry_wait, timeout
        self.interval = 60.0 / requests_per_minute
        self.cache = Path(cache_dir) if cache_dir else default_cache_dir() / "api"
        self._next_request = 0.0
        check_format(sequence_format)
        identity = json.dumps([self.url, model, sequence_format, system_prompt, max_residues])
        self.card = ModelCard(name or f"api:{model}", "api", None, None,
                              hashlib.sha256(identity.encode()).hexdigest()[:16])

    def request_body(self, sample: InstructionSample, config: GenerationConfig) -> dict:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": sequence_prompt(sample, self.sequence_format,
                                                                     self.max_residues)})
        body = {"model": self.model, "messages": messages, "max_tokens": config.max_new_tokens,
                "temperature": config.temperature if config.do_sample else 0.0, "seed": config.seed}
        if config.do_sample:
            body["top_p"] = config.top_p
        return body

    def generate(self, samples: Sequence[InstructionSample], config: GenerationConfig) -> list[str]:
        return [self._answer(self.request_body(sample, config)) for sample in samples]

    def describe(self) -> ModelCard:
        return self.card

    def _answer(self, body: dict) -> str:
        key = hashlib.sha256(json.dumps([self.url, body], sort_keys=True).encode()).hexdigest()
        cached = self.cache / f"{key}.json"
        if cached.is_file():
            return json.loads(cached.read_text())["answer"]
        answer = self._post(body)
        self.cache.mkdir(parents=True, exist_ok=True)
        with atomic_open(cached) as handle:
            json.dump({"url": self.url, "request": body, "answer": answer}, handle)
        return answer

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            self._respect_rate_limit()
            retry_after = None
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _message_text(json.loads(response.read()), self.url)
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:300]
                problem = f"HTTP {err.code} {err.reason}: {detail}"
                if err.code not in RETRIED_STATUS:
                    raise ApiError(f"{self.url}: {problem}. Check the model name, the key "
                                   "(api_key or api_key_env) and base_url.") from None
                retry_after = _seconds(err.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                problem = f"no response ({getattr(err, 'reason', err)})"
            if attempt < self.max_retries:
                wait = retry_after if retry_after is not None else self.retry_wait * 2 ** attempt
                if wait > 0:
                    time.sleep(wait)
        raise ApiError(f"{self.url}: request failed after {self.max_retries + 1} attempts, last: {problem}. "
                       "Answers received so far are cached and saved: re-run the same command to go on.")

    def _respect_rate_limit(self) -> None:
        now = time.monotonic()
        if self._next_request > now:
            time.sleep(self._next_request - now)
        self._next_request = max(now, self._next_request) + self.interval


def _message_text(payload: dict, url: str) -> str:
    try:
        return payload["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ApiError(f"{url}: the response is not a chat completion (no choices[0].message.content): "
                       f"{json.dumps(payload)[:200]}") from None


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
