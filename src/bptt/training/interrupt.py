"""Ctrl-C (SIGINT), SIGTERM or SIGHUP during training: finish the step, save, exit -- never half an update.

A KeyboardInterrupt raised at an arbitrary bytecode could land between two parameters'
updates inside ``optimizer.step``, leaving weights that belong to no step at all. So while
training, the first SIGINT/SIGTERM only *asks* to stop: the handler records it, the Trainer
finishes the update in flight and the step, ``Trainer.fit(stop=...)`` returns, and ``bptt
train`` writes its final checkpoint as after a normal end, then exits with 128 + the signal
number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP -- a closed terminal), the shell
convention for "ended by a signal".
A second SIGINT while stopping raises KeyboardInterrupt at once (the checkpoint writer is
atomic, so the previous checkpoint stays whole).

    with StopOnSignal() as stop:
        trainer.fit(data, steps, stop=stop)      # stop() is True once a signal came
    if stop.signal is not None: ...
"""

from __future__ import annotations

import signal
import sys
import threading


# SIGHUP: the terminal was closed (an ssh session dropped) -- a run must save, not just die
DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class StopOnSignal:
    def __init__(self, signals=DEFAULT_SIGNALS, announce: str | None = "bptt train"):
        self.signals = tuple(signals)
        self.announce = announce
        self.signal = None                # the first signal received (a signal.Signals), or None
        self._previous = {}

    def __call__(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return 0 if self.signal is None else 128 + int(self.signal)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt       # asked twice: stop now
        self.signal = signal.Signals(signum)
        if self.announce:
            try:
                print(f"{self.announce}: {self.signal.name} received: finishing this step and saving a checkpoint "
                      f"(Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
            except OSError:               # SIGHUP: the terminal may be gone; saving matters, the message not
                pass

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():   # handlers live in the main thread only
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}
