"""Guards for objects used from several threads, and the main-thread test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["UsageGuard", "in_main_thread"]


class UsageGuard:
    """Detects use of one object from two threads at once, instead of racing.

    Any number of concurrent readers (forward passes) are fine; a writer
    (training) needs the object to itself. The thread that is writing may
    still read (a callback's forward pass). A conflict raises RuntimeError at
    once rather than blocking.
    """

    def __init__(self, owner: str = "Network") -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._readers = 0
        self._writer: int | None = None

    def _busy(self, call: str) -> RuntimeError:
        return RuntimeError(
            f"this {self._owner} is in use by another thread ({call} would race with it); "
            f"fastbp objects are not shared between threads: give each thread its own "
            f"Network and Trainer (Network.copy()), or serialize the calls with a lock"
        )

    @contextmanager
    def reading(self, call: str) -> Iterator[None]:
        """Hold the object for reading during `call` (a method name, for the error)."""
        with self._lock:
            if self._writer is not None and self._writer != threading.get_ident():
                raise self._busy(call)
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1

    @contextmanager
    def writing(self, call: str) -> Iterator[None]:
        """Hold the object alone during `call`."""
        with self._lock:
            if self._writer is not None or self._readers:
                raise self._busy(call)
            self._writer = threading.get_ident()
        try:
            yield
        finally:
            with self._lock:
                self._writer = None


def in_main_thread() -> bool:
    """Whether this is the main thread (the one Python delivers signals to)."""
    return threading.current_thread() is threading.main_thread()
