"""The clients under test: each sends the same prompts to the same server with the same concurrency.

Every case is built and timed in a child process of its own (see ``_child``), so the CPU time and peak RSS
measured are that client's alone. ``setup`` does the imports and builds the client (not timed); ``run``
sends one batch and returns how many answers came back right; ``close`` releases the client.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from benchmarks._bodies import API_KEY, CHAT_TEXT, SCORE_TEXT

__all__ = ["CASES", "Case", "case_named"]

T = TypeVar("T")


class Case:
    """One client under test."""

    name: ClassVar[str]
    label: ClassVar[str]
    #: A peer (another library), left out by ``--no-peers``.
    peer: ClassVar[bool] = False
    #: The azml-client case the targets are about.
    target: ClassVar[bool] = False

    def setup(self, base_url: str, concurrency: int) -> None:
        """Import the client's library and build the client (not timed)."""
        raise NotImplementedError

    def run(self, prompts: Iterable[str]) -> int:
        """Send every prompt; return the number of right answers."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the client."""


class _AsyncCase(Case):
    """A case whose client is async: it runs on an event loop of its own, kept across runs."""

    def setup(self, base_url: str, concurrency: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.concurrency = concurrency
        self._await(self.asetup(base_url))

    def _await(self, make: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(make)

    def run(self, prompts: Iterable[str]) -> int:
        return self._await(self.arun(prompts))

    def close(self) -> None:
        try:
            self._await(self.aclose())
        finally:
            self.loop.close()

    async def asetup(self, base_url: str) -> None:
        raise NotImplementedError

    async def arun(self, prompts: Iterable[str]) -> int:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _count(results: Sequence[Any], expected: str, text: Callable[[Any], Any] = lambda r: r) -> int:
    return sum(1 for result in results if text(result) == expected)


class AzmlAbatch(_AsyncCase):
    """``LLM.abatch`` with the gpt2 formatter against a dedicated ``/score`` endpoint."""

    name = "azml-abatch"
    label = "azml LLM.abatch (gpt2, dedicated)"
    target = True

    async def asetup(self, base_url: str) -> None:
        import azml_client as az

        self.llm = az.LLM(f"{base_url}/score", API_KEY, formatter="gpt2")

    async def arun(self, prompts: Iterable[str]) -> int:
        return _count(await self.llm.abatch(prompts, max_concurrency=self.concurrency), SCORE_TEXT)

    async def aclose(self) -> None:
        await self.llm.aclose()


class AzmlChatAbatch(_AsyncCase):
    """``ChatModel.abatch`` with the openai-chat formatter against a serverless endpoint's base URL."""

    name = "azml-chat-abatch"
    label = "azml ChatModel.abatch (serverless)"

    async def asetup(self, base_url: str) -> None:
        import azml_client as az

        self.chat = az.ChatModel(base_url, API_KEY, api_type="serverless")

    async def arun(self, prompts: Iterable[str]) -> int:
        results = await self.chat.abatch(prompts, max_concurrency=self.concurrency)
        return _count(results, CHAT_TEXT, lambda r: r.content)

    async def aclose(self) -> None:
        await self.chat.aclose()


class AzmlSyncBatch(Case):
    """The sync twin ``LLM.batch``, called from a plain script (no event loop of the caller's)."""

    name = "azml-batch-sync"
    label = "azml LLM.batch (sync)"

    def setup(self, base_url: str, concurrency: int) -> None:
        import azml_client as az

        self.concurrency = concurrency
        self.llm = az.LLM(f"{base_url}/score", API_KEY, formatter="gpt2")

    def run(self, prompts: Iterable[str]) -> int:
        return _count(self.llm.batch(prompts, max_concurrency=self.concurrency), SCORE_TEXT)

    def close(self) -> None:
        self.llm.close()


class AzmlAsCompleted(_AsyncCase):
    """``LLM.abatch_as_completed`` over a generator: results are counted as they come, never kept."""

    name = "azml-as-completed"
    label = "azml LLM.abatch_as_completed (generator)"

    async def asetup(self, base_url: str) -> None:
        import azml_client as az

        self.llm = az.LLM(f"{base_url}/score", API_KEY, formatter="gpt2")

    async def arun(self, prompts: Iterable[str]) -> int:
        ok = 0
        lazily = (prompt for prompt in prompts)
        async for _, result in self.llm.abatch_as_completed(lazily, max_concurrency=self.concurrency):
            ok += result == SCORE_TEXT
        return ok

    async def aclose(self) -> None:
        await self.llm.aclose()


class RawAiohttp(_AsyncCase):
    """The limit: an aiohttp loop written as plainly as a user would (one session, a semaphore, gather)."""

    name = "aiohttp-raw"
    label = "raw aiohttp loop (the limit)"

    async def asetup(self, base_url: str) -> None:
        import aiohttp

        self.url = f"{base_url}/score"
        self.session = aiohttp.ClientSession()

    async def arun(self, prompts: Iterable[str]) -> int:
        session, url = self.session, self.url
        headers = {"Authorization": f"Bearer {API_KEY}"}
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(prompt: str) -> str:
            async with semaphore:
                payload = {"inputs": {"input_string": [prompt]}, "parameters": {}}
                async with session.post(url, json=payload, headers=headers) as response:
                    response.raise_for_status()
                    data = await response.json()
                    return str(data[0]["0"])

        return _count(await asyncio.gather(*(one(prompt) for prompt in prompts)), SCORE_TEXT)

    async def aclose(self) -> None:
        await self.session.close()


class RawAiohttpChat(_AsyncCase):
    """The limit for chat: the same plain aiohttp loop, sending chat messages to the serverless chat route."""

    name = "aiohttp-raw-chat"
    label = "raw aiohttp loop, chat route"

    async def asetup(self, base_url: str) -> None:
        import aiohttp

        self.url = f"{base_url}/v1/chat/completions"
        self.session = aiohttp.ClientSession()

    async def arun(self, prompts: Iterable[str]) -> int:
        session, url = self.session, self.url
        headers = {"Authorization": f"Bearer {API_KEY}"}
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(prompt: str) -> str:
            async with semaphore:
                payload = {"messages": [{"role": "user", "content": prompt}]}
                async with session.post(url, json=payload, headers=headers) as response:
                    response.raise_for_status()
                    data = await response.json()
                    return str(data["choices"][0]["message"]["content"])

        return _count(await asyncio.gather(*(one(prompt) for prompt in prompts)), CHAT_TEXT)

    async def aclose(self) -> None:
        await self.session.close()


class SeedAbatch(_AsyncCase):
    """The seed: langchain_community's ``AzureMLOnlineEndpoint.abatch`` (gpt2, dedicated)."""

    name = "seed-abatch"
    label = "seed AzureMLOnlineEndpoint.abatch"
    peer = True

    async def asetup(self, base_url: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.llms.azureml_endpoint import AzureMLOnlineEndpoint, GPT2ContentFormatter

            # The api type as a str: on Python 3.11+ the seed turns its own enum member into the string
            # "AzureMLEndpointApiType.dedicated" and then rejects it.
            self.llm = AzureMLOnlineEndpoint(
                endpoint_url=f"{base_url}/score",
                endpoint_api_type="dedicated",
                endpoint_api_key=API_KEY,
                content_formatter=GPT2ContentFormatter(),
            )

    async def arun(self, prompts: Iterable[str]) -> int:
        results = await self.llm.abatch(list(prompts), config={"max_concurrency": self.concurrency})
        return _count(results, SCORE_TEXT)


class OpenAIAsync(_AsyncCase):
    """openai's ``AsyncOpenAI().chat.completions.create`` against the serverless ``/v1`` base URL."""

    name = "openai"
    label = "openai AsyncOpenAI (chat)"
    peer = True

    async def asetup(self, base_url: str) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=API_KEY)

    async def arun(self, prompts: Iterable[str]) -> int:
        client = self.client
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(prompt: str) -> str | None:
            async with semaphore:
                completion = await client.chat.completions.create(
                    model="bench-model", messages=[{"role": "user", "content": prompt}]
                )
                return completion.choices[0].message.content

        return _count(await asyncio.gather(*(one(prompt) for prompt in prompts)), CHAT_TEXT)

    async def aclose(self) -> None:
        await self.client.close()


#: Every case, in the order of the table.
CASES: tuple[type[Case], ...] = (
    AzmlAbatch,
    AzmlChatAbatch,
    AzmlSyncBatch,
    AzmlAsCompleted,
    RawAiohttp,
    RawAiohttpChat,
    SeedAbatch,
    OpenAIAsync,
)


def case_named(name: str) -> type[Case]:
    """The case class called ``name``."""
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case {name!r} (cases: {', '.join(c.name for c in CASES)})")
