"""Offline replay: recorded response bytes through the live decoding path, no network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .events import Event
from .providers import Dialect, ResponseReader, get_dialect
from .wire import DEFAULT_MAX_EVENT_BYTES

__all__ = ["replay"]


def replay(
    dialect: str | Dialect,
    chunks: Iterable[bytes],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    model: str = "replay",
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Observable[Event]:
    """A cold Observable that decodes recorded response bytes as a live response would.

    ``chunks`` are the network reads, in order. The framing is chosen by the
    ``content-type`` header (the dialect's streaming type when absent) and a non-2xx
    ``status`` turns the bytes into the provider's typed error, exactly as the transport
    does. Each subscription replays from the start, synchronously.

    Example::

        response = await rxllm.collect(rxllm.replay("openai", [b"data: {...}\\n\\n", ...]))
    """
    d = get_dialect(dialect)
    recorded = tuple(bytes(c) for c in chunks)
    hdrs: dict[str, str] = dict(headers or {})
    content_type = next(
        (v for k, v in hdrs.items() if k.lower() == "content-type"), d.stream_content_type
    )
    name = provider or d.name

    def subscribe(observer: abc.ObserverBase[Event], _: Any = None) -> abc.DisposableBase:
        stopped = False

        def dispose() -> None:
            nonlocal stopped
            stopped = True

        if not 200 <= status < 300:
            observer.on_error(d.parse_error(status, hdrs, b"".join(recorded)))
            return Disposable()
        reader = ResponseReader(
            d.stream_decoder(content_type=content_type, max_event_bytes=max_event_bytes),
            provider=name,
        )
        on_next = observer.on_next
        for ev in reader.started(d.started(hdrs, provider=name, model=model)):
            on_next(ev)
        for chunk in recorded:
            for ev in reader.feed(chunk):
                if stopped or getattr(observer, "is_stopped", False):
                    return Disposable(dispose)
                on_next(ev)
            if reader.error is not None:
                observer.on_error(_as_exception(reader.error))
                return Disposable(dispose)
        for ev in reader.finish():
            on_next(ev)
        if reader.error is not None:
            observer.on_error(_as_exception(reader.error))
        else:
            observer.on_completed()
        return Disposable(dispose)

    return reactivex.create(subscribe)


def _as_exception(error: BaseException) -> Exception:
    return error if isinstance(error, Exception) else RuntimeError(str(error))
