"""General-purpose LLMs behind an OpenAI-compatible chat-completions API, given the sequence as text.

    sepit bench --model api --model_args '{"model": "gpt-4o-mini", "sequence_format": "raw"}' --tasks sp14 ...

The key comes from `api_key` or the environment variable named by `api_key_env` (OPENAI_API_KEY); it is sent
in the Authorization header and nowhere else: not in the cache, errors, fingerprints or results (bench masks
model arguments named like credentials). The client (`sepit.chat_client`) caches every answer under its
request, retries failed requests (HTTP 429, 5xx, network errors) with exponential backoff honouring
Retry-After, and keeps to the rate limit; other failures stop at once with the server's message.

    --model_args '{"model": ..., "retries": {"max_retries": 8, "requests_per_minute": 30}}'  # RetrySettings
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Sequence

from sepit.chat_client import ApiError, ChatClient, RetrySettings  # noqa: F401 (ApiError: part of this module's API)
from sepit.data.protein import ESM2_WINDOW
from sepit.errors import InputError
from sepit.data.sample import InstructionSample
from sepit.models.formatters import check_format, sequence_prompt
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM

DEFAULT_SYSTEM_PROMPT = ("You are an expert in protein biology. Answer the question about the given protein "
                         "sequence concisely.")


class ApiModel(ProteinLLM):
    """One chat-completions request per sample, cached, retried and rate limited."""

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", sequence_format: str = "raw",
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, max_residues: int = ESM2_WINDOW,
                 retries: RetrySettings | dict = RetrySettings(), cache_dir: str | None = None, name: str | None = None):
        """
        Args:
            model: the model name the API expects.
            base_url: the API root; `/chat/completions` is appended.
            api_key: the key (prefer api_key_env: a key in a command line ends up in shell history).
            api_key_env: the environment variable holding the key; no key sends no Authorization header.
            sequence_format: how the sequence is written into the prompt (sepit.models.formatters).
            system_prompt: the system message (None: none).
            max_residues: residues written into the prompt (the shared 1022-residue crop by default).
            retries: max_retries, retry_wait, requests_per_minute and timeout (`RetrySettings`, or a dict of them
                as --model_args gives it).
            cache_dir: where answers are cached (default $SEPIT_CACHE/api).
            name: the name in results (default api:<model>).
        """
        self.model = model
        if isinstance(retries, dict):
            unknown = set(retries) - {field.name for field in dataclasses.fields(RetrySettings)}
            if unknown:
                raise InputError("model_args.retries", f"has no setting {', '.join(map(repr, sorted(unknown)))}",
                                 "Set max_retries, retry_wait, requests_per_minute or timeout.")
            retries = RetrySettings(**retries)
        self.client = ChatClient(base_url, api_key, api_key_env, retries, cache_dir)
        self.sequence_format, self.system_prompt, self.max_residues = sequence_format, system_prompt, max_residues
        check_format(sequence_format)
        identity = json.dumps([self.client.url, model, sequence_format, system_prompt, max_residues])
        self.card = ModelCard(name or f"api:{model}", "api", None, None,
                              hashlib.sha256(identity.encode()).hexdigest()[:16])

    def request_body(self, sample: InstructionSample, config: GenerationSettings) -> dict:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": sequence_prompt(sample, self.sequence_format,
                                                                     self.max_residues)})
        body = {"model": self.model, "messages": messages, "max_tokens": config.max_new_tokens,
                "temperature": config.temperature if config.do_sample else 0.0, "seed": config.seed}
        if config.do_sample:
            body["top_p"] = config.top_p
        return body

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        return [self.client.complete(self.request_body(sample, config)) for sample in samples]

    def describe(self) -> ModelCard:
        return self.card
