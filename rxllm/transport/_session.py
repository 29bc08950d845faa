"""One aiohttp ``ClientSession`` per event loop, shared by every provider and closable."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

__all__ = ["SessionSettings", "aclose", "configure", "get_session", "session"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """Connection-pool settings for the shared sessions.

    Attributes:
        limit: most connections open at once across all hosts (0 = no limit).
        limit_per_host: most connections per host (0 = no limit).
        read_bufsize: aiohttp's per-response read buffer; reading pauses past twice this, which
            is what lets a shut valve push back on the provider through TCP.
        trust_env: honour ``HTTP(S)_PROXY`` and ``.netrc`` like other HTTP clients.
    """

    limit: int = 512
    limit_per_host: int = 0
    read_bufsize: int = 64 * 1024
    trust_env: bool = False


_settings = SessionSettings()
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def configure(settings: SessionSettings) -> None:
    """Use ``settings`` for sessions created from now on (close existing ones to apply)."""
    global _settings
    _settings = settings


def get_session() -> aiohttp.ClientSession:
    """The running loop's shared session, created on first use."""
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        connector = aiohttp.TCPConnector(
            limit=_settings.limit,
            limit_per_host=_settings.limit_per_host,
            enable_cleanup_closed=False,
        )
        found = aiohttp.ClientSession(
            connector=connector,
            read_bufsize=_settings.read_bufsize,
            trust_env=_settings.trust_env,
            auto_decompress=True,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        _sessions[loop] = found
    return found


async def aclose() -> None:
    """Close the running loop's shared session and its connections (a no-op if none)."""
    loop = asyncio.get_running_loop()
    found = _sessions.pop(loop, None)
    if found is not None and not found.closed:
        await found.close()


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An async context manager around the shared session that closes it on exit::

    async with rxllm.session():
        response = await rxllm.collect(provider.stream(request))
    """
    try:
        yield get_session()
    finally:
        await aclose()
