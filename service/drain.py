"""SIGTERM behind a load balancer: leave the pool of healthy servers first, then stop.

uvicorn on SIGTERM closes its listening socket at once. A load balancer that has not
noticed yet keeps sending new connections there (refused) and requests on its idle
keep-alive connections (closed under it). With `SHUTDOWN_DRAIN_S` > 0, SIGTERM instead
makes /ready answer 503 while the process keeps serving; the load balancer's health
check takes it out of rotation; after `SHUTDOWN_DRAIN_S` the signal goes on to the
handlers before this one (the event feed's, which answers the long polls, then
uvicorn's, which finishes the requests in flight). A second SIGTERM goes on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Drain:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.draining = False  # /ready answers 503 from the first SIGTERM on

    @contextlib.contextmanager
    def on_sigterm(self) -> Iterator[None]:
        """Delay SIGTERM by `delay_s` while inside (the lifespan), when a delay is set."""
        if not self.delay_s or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop, previous = asyncio.get_running_loop(), signal.getsignal(signal.SIGTERM)

        def pass_on(signum: int, frame: FrameType | None) -> None:
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                pass_on(signum, frame)
                return
            self.draining = True
            loop.call_soon_threadsafe(loop.call_later, self.delay_s, pass_on, signum, None)

        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)
