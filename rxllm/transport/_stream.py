"""A provider response as a cold Observable: the only place rxllm reads HTTP.

Each subscription starts one task that sends the request, feeds raw reads of the body to
the dialect's decoder through ``ResponseReader`` and calls the observer synchronously, with
no scheduler hop per event. Disposing the subscription cancels the task, which closes the
connection (a half-read connection never goes back to the pool).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm._valve import current_valve
from rxllm.errors import (
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    ReadTimeout,
    RxllmError,
    TransportError,
    redact,
    scrub,
)
from rxllm.events import Event
from rxllm.providers import Dialect, HttpCall, ResponseReader
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES

from ._session import get_session

__all__ = ["Timeouts", "http_stream"]

log = logging.getLogger("rxllm.transport")

MAX_ERROR_BODY = 64 * 1024
"""An error response body is read up to this many bytes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Transport timeouts in seconds (``None`` = no limit).

    Attributes:
        connect: to get a connection (DNS, TCP, TLS) and the response headers.
        read: the longest silence between two reads of the body (idle read timeout).
    """

    connect: float | None = 10.0
    read: float | None = 300.0


def http_stream(
    call: HttpCall,
    dialect: Dialect,
    *,
    provider: str,
    model: str,
    timeouts: Timeouts = Timeouts(),
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    secrets: tuple[str, ...] = (),
) -> Observable[Event]:
    """A cold Observable of the events of ``call``'s response: one request per subscription.

    Errors: before the first token, the typed provider error (non-2xx status or in-band),
    ``ConnectError``/``ConnectTimeout``, ``ReadTimeout`` or ``ConnectionLost``; after it,
    ``StreamInterrupted`` with the exact partial ``Response``; a body that ends without the
    provider's terminator, ``IncompleteStream``. Must be subscribed on an asyncio loop.
    """

    def subscribe(observer: abc.ObserverBase[Event], _: Any = None) -> abc.DisposableBase:
        loop = asyncio.get_running_loop()
        state = _State()
        task = loop.create_task(
            _run(
                call, dialect, observer, state, provider, model, timeouts, max_event_bytes, secrets
            ),
            name=f"rxllm:{provider}",
        )
        state.task = task

        def dispose() -> None:
            state.disposed = True
            if not task.done():
                task.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


class _State:
    __slots__ = ("disposed", "task")

    def __init__(self) -> None:
        self.disposed = False
        self.task: asyncio.Task[None] | None = None


async def _run(
    call: HttpCall,
    dialect: Dialect,
    observer: abc.ObserverBase[Event],
    state: _State,
    provider: str,
    model: str,
    timeouts: Timeouts,
    max_event_bytes: int,
    secrets: tuple[str, ...],
) -> None:
    valve = current_valve()
    session = get_session()
    response: aiohttp.ClientResponse | None = None
    clean = False
    reader: ResponseReader | None = None
    try:
        try:
            response = await session.request(
                call.method,
                call.url,
                headers=dict(call.headers),
                data=call.body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeouts.connect,
                    connect=timeouts.connect,
                    sock_read=timeouts.read,
                ),
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ConnectTimeout(
                f"{provider}: no response within {timeouts.connect}s", timeout=timeouts.connect
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"{provider}: cannot connect: {_describe(exc, secrets)}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{provider}: request failed: {_describe(exc, secrets)}") from exc
        status = response.status
        headers: Mapping[str, str] = response.headers
        log.debug("%s %s -> %s", call.method, _url_for_log(call.url), status)
        if not 200 <= status < 300:
            body = await _read_bounded(response, MAX_ERROR_BODY)
            error = dialect.parse_error(status, headers, body)
            scrub(error, secrets)
            clean = True
            observer.on_error(error)
            return
        content_type = headers.get("Content-Type", dialect.stream_content_type)
        reader = ResponseReader(
            dialect.stream_decoder(content_type=content_type, max_event_bytes=max_event_bytes),
            provider=provider,
            secrets=secrets,
        )
        on_next = observer.on_next
        for ev in reader.started(dialect.started(headers, provider=provider, model=model)):
            on_next(ev)
        content = response.content
        while True:
            if valve is not None and not valve.is_open:
                await valve.wait_open()
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise ReadTimeout(
                    f"{provider}: no bytes for {timeouts.read}s", timeout=timeouts.read
                ) from exc
            except (
                aiohttp.ClientPayloadError,
                aiohttp.ClientConnectionError,
                ConnectionError,
            ) as exc:
                raise ConnectionLost(
                    f"{provider}: connection lost: {_describe(exc, secrets)}"
                ) from exc
            if not chunk:
                break
            for ev in reader.feed(chunk):
                if state.disposed:
                    return
                on_next(ev)
            if reader.error is not None:
                observer.on_error(_exception(reader.error))
                return
            if state.disposed:
                return
        for ev in reader.finish():
            if state.disposed:
                return
            on_next(ev)
        clean = reader.error is None
        if reader.error is not None:
            observer.on_error(_exception(reader.error))
        else:
            observer.on_completed()
    except asyncio.CancelledError:
        raise
    except RxllmError as exc:
        if not state.disposed:
            observer.on_error(_exception(reader.fail(exc) if reader is not None else exc))
    except Exception as exc:  # noqa: BLE001 - anything else still reaches the consumer, typed
        if not state.disposed:
            wrapped = TransportError(f"{provider}: {_describe(exc, secrets)}")
            wrapped.__cause__ = exc
            observer.on_error(_exception(reader.fail(wrapped) if reader is not None else wrapped))
    finally:
        if response is not None:
            if clean and response.content.at_eof():
                response.release()
            else:
                # Never return a half-read connection to the pool.
                response.close()


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        pass  # an error body that breaks off is still an error: keep what came
    return b"".join(parts)


def _exception(error: BaseException) -> Exception:
    return error if isinstance(error, Exception) else RuntimeError(str(error))


def _describe(exc: BaseException, secrets: tuple[str, ...]) -> str:
    return redact(f"{type(exc).__name__}: {exc}", secrets)


def _url_for_log(url: str) -> str:
    # Query strings can carry keys (some Gemini clients put ?key= there): never log them.
    return url.split("?", 1)[0]
