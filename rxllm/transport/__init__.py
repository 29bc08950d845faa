"""The transport: the only aiohttp client code in rxllm.

``Provider`` / ``provider()`` turn a dialect and an endpoint into cold Observables;
``http_stream`` is the underlying source; one ``ClientSession`` per event loop is shared and
closed with ``aclose()`` or the ``session()`` context manager.
"""

from ._provider import Provider, provider
from ._session import SessionSettings, aclose, configure, get_session, session
from ._stream import Timeouts, http_stream

__all__ = [
    "Provider",
    "SessionSettings",
    "Timeouts",
    "aclose",
    "configure",
    "get_session",
    "http_stream",
    "provider",
    "session",
]
