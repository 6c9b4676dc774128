"""An OpenAI-compatible chat-completions client: every answer cached on disk under its request (a re-run, or a
resumed one, never pays twice), failed requests retried with exponential backoff honouring Retry-After, a rate
limit, and the key sent in the Authorization header and nowhere else (not in the cache, errors or logs). The
`api` baseline asks it questions about proteins."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sepit.cache import cache_dir as default_cache_dir
from sepit.data.files import atomic_open

RETRIED_STATUS = (408, 409, 429, 500, 502, 503, 504)


class ApiError(OSError):
    """A request that failed for good; the message says where, why, and what to check."""


@dataclass(frozen=True)
class RetrySettings:
    """How hard to try: retries after a failed request (429, 5xx, network errors), seconds before the first
    retry (doubled each time), the most requests per minute, and seconds to wait for one response."""

    max_retries: int = 4
    retry_wait: float = 2.0
    requests_per_minute: float = 60.0
    timeout: float = 120.0


class ChatClient:
    """POSTs chat-completion bodies to `base_url`/chat/completions; `complete(body)` -> the answer's text."""

    def __init__(self, base_url: str, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 retries: RetrySettings = RetrySettings(), cache_dir: str | Path | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.key = api_key or os.environ.get(api_key_env) or None
        self.max_retries, self.retry_wait, self.timeout = retries.max_retries, retries.retry_wait, retries.timeout
        self.interval = 60.0 / retries.requests_per_minute
        self.cache = Path(cache_dir) if cache_dir else default_cache_dir() / "api"
        self._next_request = 0.0

    def complete(self, body: dict) -> str:
        """The answer to `body`, from the cache or the server."""
        return self._answer(body)

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
