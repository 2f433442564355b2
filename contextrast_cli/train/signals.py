"""Stop requests: SIGINT and SIGTERM are acted on between training steps, never inside one.

A handler that raised inside a step could land mid-forward, after BatchNorm has updated
some of its running statistics but not others; a checkpoint written then would hold a
state no step ever produced. Here the handler only records the request; the trainer
finishes the step it is in, writes ``last.pt`` and stops. A second Ctrl-C stops at once
(``KeyboardInterrupt``), without writing: the previous checkpoint stays as it was.
"""

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells report it


class StopSignals:
    """Context manager: while inside, SIGINT and SIGTERM set ``requested`` instead of stopping.

    Only the main thread can install signal handlers; elsewhere (a training loop run in a
    thread) this does nothing and the signals keep their handlers.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def signum(self) -> int:
        """The signal received (0: none)."""
        return int(self.received or 0)

    def _handle(self, signum: int, _frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # pressed twice: stop now
        self.received = signal.Signals(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def signal_name(signum: int) -> str:
    """How a stop signal is named in messages."""
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
