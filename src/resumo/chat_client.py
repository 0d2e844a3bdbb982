"""One client for OpenAI-compatible chat endpoints: distill's teacher and the judge.

Both stages ask one endpoint many questions, so what they share lives here, once:
- the API key rule: `api_key_env` names the environment variable that holds the key
  (on a cluster the pipeline mounts it from `cluster.secrets.openai` under that name);
  None means an endpoint without authentication; a name that is not set is an error
  before the first request, never a placeholder key sent to an endpoint that wants one;
- the openai client's timeout and retries (429, 5xx, connection errors, with backoff);
- at most `concurrency` requests in flight (vLLM batches what is in flight);
- `response_format`, stepped down when the endpoint refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from resumo import fanout
from resumo.errors import ConfigError

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# Sent where the endpoint has no authentication: the openai client refuses an empty key.
NO_AUTH_KEY = "none"
# The formats `auto` tries, best first: vLLM's guided decoding and OpenAI's structured outputs
# take json_schema; older servers only json_object; some neither.
FORMAT_LADDER = ("json_schema", "json_object", "none")
# A 400/422 that talks about these is a refused format; any other (an article over the
# context length) is that request's own failure.
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|schema|guided", re.I)


@dataclass(frozen=True)
class Endpoint:
    """Where to ask and how hard to push: the fields teacher and judge configs share."""

    section: str  # the config section, for error messages: "distill.teacher", "judge"
    base_url: str | None
    api_key_env: str | None
    timeout_s: float
    max_retries: int
    concurrency: int

    @classmethod
    def of(cls, cfg: Any, section: str) -> Endpoint:
        """From a TeacherConfig or JudgeConfig; checks the key is there before anything is asked."""
        endpoint = cls(section, cfg.base_url, cfg.api_key_env, cfg.timeout_s, cfg.max_retries, cfg.concurrency)
        endpoint.api_key()
        return endpoint

    def api_key(self) -> str:
        if self.api_key_env is None:
            return NO_AUTH_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"{self.section}.api_key_env = {self.api_key_env!r}, but that environment variable is not set; set it "
                f"(on a cluster the pipeline mounts it from the Secret cluster.secrets.openai), or set {self.section}.api_key_env=null "
                "for an endpoint without authentication"
            )
        return key

    def client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.base_url, api_key=self.api_key(), timeout=self.timeout_s, max_retries=self.max_retries)

    def ask_all(self, ask: Callable[[Any, Item], Awaitable[None]], items: Sequence[Item], desc: str, unit: str) -> None:
        """`await ask(client, item)` for every item, at most `concurrency` at once, with a progress bar.

        A fresh client per call: asyncio.run gives each call its own event loop, and an httpx
        pool must not outlive the loop it was opened on.
        """

        async def run() -> None:
            client = self.client()
            async with client:
                await fanout.bounded_gather(lambda item: ask(client, item), items, self.concurrency, desc=desc, unit=unit)

        asyncio.run(run())


class ResponseFormats:
    """The `response_format` to send, shared by all requests of one stage: `auto` starts with
    json_schema and steps down, once for everyone, when the endpoint refuses a format."""

    def __init__(self, mode: str, section: str, schema: dict | None = None, schema_name: str = "answer"):
        self._ladder = list(FORMAT_LADDER if mode == "auto" else (mode,))
        self._section, self._schema, self._schema_name = section, schema, schema_name

    @property
    def current(self) -> str:
        return self._ladder[0]

    async def create(self, client, **request):
        """client.chat.completions.create(**request) with the current format, stepping down on a refusal of it."""
        import openai

        while True:
            fmt = self.current
            try:
                return await client.chat.completions.create(**request, **self._argument(fmt))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
                if len(self._ladder) == 1 or not _FORMAT_WORDS.search(str(err)):
                    raise
                if self.current == fmt:  # another request may have stepped down already
                    log.warning("%s: endpoint refused response_format %r (%s); using %r", self._section, fmt, err.status_code, self._ladder[1])
                    self._ladder.pop(0)

    def _argument(self, fmt: str) -> dict:
        if fmt == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": {"name": self._schema_name, "schema": self._schema, "strict": True}}}
        if fmt == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}


def content(response) -> str:
    """The first choice's text; an answer with no choices is that request's failure."""
    if not response.choices:
        raise ValueError("the answer has no choices")
    return response.choices[0].message.content or ""
