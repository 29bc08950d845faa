"""Files of ``rxllm.batch``: input rows (JSON lines with ids) and the resumable output.

The output file is append-only JSON lines, one per finished row. Each line is written with
one ``os.write`` of the whole line (``O_APPEND``), so a process killed at any moment leaves
complete lines plus at most one partial line at the end, which the next run truncates. The
file is locked (``flock``) while a batch writes to it, so two batches cannot interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import orjson

from rxllm.errors import ConfigError

if sys.platform != "win32":  # POSIX: lock the output; elsewhere it is not locked
    import fcntl

__all__ = [
    "FsyncPolicy",
    "OutputFile",
    "RowId",
    "id_key",
    "iter_jsonl",
    "row_id",
    "scan_rows",
]

RowId = str | int
"""A row id: a non-empty string or an integer."""

FsyncPolicy = Literal["always", "interval", "never"]

READ_CHUNK = 1 << 20


def row_id(row: object, id_field: str, where: str) -> RowId:
    """The id of ``row``, or ``ConfigError`` naming ``where`` the row came from."""
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where}: a row must be a JSON object, not {type(row).__name__}")
    if id_field not in row:
        raise ConfigError(
            f"{where}: the row has no {id_field!r} field (every row needs a unique id; "
            "--id-field names another field)"
        )
    value = row[id_field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{where}: the id must be a string or an integer, not {value!r:.80}")
    if isinstance(value, str) and not value:
        raise ConfigError(f"{where}: the id is an empty string")
    return value


def id_key(value: RowId) -> bytes:
    """The id as compared between input and output: its JSON text (``7`` and ``"7"`` differ)."""
    return orjson.dumps(value)


def iter_jsonl(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line of ``path``, streamed."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if stripped:
                yield number, stripped


def parse_row(path: Path, number: int, line: bytes) -> Any:
    """One input line as JSON, or ``ConfigError`` with its place."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{number}: not JSON: {exc}") from None


def scan_rows(path: Path, id_field: str) -> int:
    """Check every row of a JSON-lines file before the batch starts: each is an object with
    a unique id. Returns the number of rows."""
    seen: set[bytes] = set()
    for number, line in iter_jsonl(path):
        key = id_key(row_id(parse_row(path, number, line), id_field, f"{path}:{number}"))
        if key in seen:
            raise ConfigError(f"{path}:{number}: id {key.decode()} appears twice")
        seen.add(key)
    return len(seen)


class OutputFile:
    """The batch's output: the ids already in it, and appends of whole lines.

    ``OutputFile.open(path)`` locks the file, truncates a partial last line (left by a
    process killed mid-write) and reads the ids of the rows already written: ``done``
    maps each id key to its status (``"ok"`` or ``"failed"``). With ``retry_failed``, the
    lines of failed rows are removed first (the file is rewritten to a temporary file that
    replaces it atomically), so those rows run again and each id still appears once.
    """

    __slots__ = (
        "_dirty",
        "_fd",
        "_fsync_lock",
        "done",
        "fsync",
        "path",
        "removed_failed",
        "truncated_bytes",
    )

    def __init__(self, path: Path, fd: int, fsync: FsyncPolicy) -> None:
        self.path = path
        self._fd = fd
        self.fsync = fsync
        self.done: dict[bytes, str] = {}
        self.truncated_bytes = 0
        self.removed_failed = 0
        self._dirty = False
        self._fsync_lock: asyncio.Lock | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, fsync: FsyncPolicy = "interval", retry_failed: bool
    ) -> OutputFile:
        """Open (creating it if needed), lock, repair and read the output file."""
        if fsync not in ("always", "interval", "never"):
            raise ConfigError('fsync is "always", "interval" or "never"')
        p = Path(path)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _lock(fd, p)
            out = cls(p, fd, fsync)
            failed_lines = out._recover()
            if retry_failed and failed_lines:
                out._rewrite_without(failed_lines)
        except BaseException:
            os.close(fd)
            raise
        return out

    def _recover(self) -> set[int]:
        """Truncate a partial last line, read every complete one; return the numbers of the
        lines of failed rows (whose id has no ok line)."""
        end = 0  # offset just after the last newline
        offset = 0
        tail = b""
        number = 0
        failed: dict[bytes, list[int]] = {}
        with os.fdopen(os.dup(self._fd), "rb") as f:
            f.seek(0)
            while chunk := f.read(READ_CHUNK):
                data = tail + chunk
                start = 0
                while (nl := data.find(b"\n", start)) >= 0:
                    number += 1
                    self._read_line(data[start:nl], number, failed)
                    start = nl + 1
                offset += len(chunk)
                tail = data[start:]
                end = offset - len(tail)
        if tail:
            os.ftruncate(self._fd, end)
            self.truncated_bytes = len(tail)
        return {
            n for key, numbers in failed.items() if self.done.get(key) == "failed" for n in numbers
        }

    def _read_line(self, line: bytes, number: int, failed: dict[bytes, list[int]]) -> None:
        if not line.strip():
            return
        try:
            record = orjson.loads(line)
            key = id_key(record["id"])
            status = record["status"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.path}:{number}: not a line of rxllm batch output ({exc}); "
                "use another --output file"
            ) from None
        if status == "ok":
            self.done[key] = "ok"
        else:
            failed.setdefault(key, []).append(number)
            self.done.setdefault(key, "failed")

    def _rewrite_without(self, drop: set[int]) -> None:
        """Replace the file with a copy that lacks the lines numbered in ``drop``."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            _lock(fd, tmp)
            with os.fdopen(os.dup(self._fd), "rb") as f:
                f.seek(0)
                for number, line in enumerate(f, 1):
                    if number not in drop:
                        _write_all(fd, line)
            os.fsync(fd)
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(self._fd)
        self._fd = fd
        self.removed_failed = len(drop)
        self.done = {key: status for key, status in self.done.items() if status == "ok"}

    def write(self, line: bytes) -> None:
        """Append one row: ``line`` (without its newline) plus ``\\n`` in one ``write()``."""
        _write_all(self._fd, line + b"\n")
        self._dirty = True

    async def sync(self) -> None:
        """``fsync`` in a worker thread if anything was written since the last one."""
        if not self._dirty or self._fd < 0:
            return
        if self._fsync_lock is None:
            self._fsync_lock = asyncio.Lock()
        async with self._fsync_lock:
            if not self._dirty or self._fd < 0:
                return
            self._dirty = False
            await asyncio.to_thread(os.fsync, self._fd)

    async def after_write(self) -> None:
        """Apply the ``always`` policy: each row is on disk before it is reported."""
        if self.fsync == "always":
            await self.sync()

    async def aclose(self) -> None:
        """Flush to disk (unless the policy is ``never``), unlock and close."""
        if self._fd < 0:
            return
        if self.fsync != "never":
            await self.sync()
        fd, self._fd = self._fd, -1
        os.close(fd)  # closing releases the lock

    def close(self) -> None:
        """Close without waiting (``fsync`` on the calling thread unless ``never``)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        if self.fsync != "never" and self._dirty:
            os.fsync(fd)
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"{path} is being written by another batch") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
