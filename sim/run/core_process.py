"""The in-process core in a process of its own, for a pipelined run (`sim.run.pipelined`):
the twin sends blocks of calls on the `Target` port, the core's process answers each block
with its results, in order.

Both directions are `multiprocessing` queues: their feeder threads write, so neither side
blocks on a full pipe while the other is busy writing too."""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import queue
import resource
import signal
import threading
import traceback
from datetime import datetime
from typing import Any

from integration import CoreSettings
from sim.run.targets import InProcessTarget

__all__ = ["CoreProcess", "CoreProcessError"]

Call = tuple[Any, ...]  # (method name of InProcessTarget, *arguments)
LOOK = 1.0  # seconds between looks at whether the core's process is still alive while waiting
CLOSE = "close"
TWIN_GONE = 3  # the exit code of a core's process whose twin was killed


class CoreProcessError(RuntimeError):
    """The core's process failed (its traceback in the message) or died without a word."""


class _Failure:
    def __init__(self, text: str) -> None:
        self.text = text


def _serve(
    requests, answers, settings: CoreSettings, store_url: str, start: datetime, collect
) -> None:
    """The core's process: each block of calls is answered by the list of their results; a
    block ending with `close` closes the core, answers it with the process's peak resident
    memory (KiB) and ends the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the twin's: it closes the core
    _end_with_the_twin()
    gc.set_threshold(*collect)  # as in the twin's process (`runner._young_collections_every`)
    try:
        target = InProcessTarget(settings, store_url, start)
    except BaseException:  # noqa: BLE001 - reported to the twin, which raises it
        answers.put(_Failure(traceback.format_exc()))
        return
    try:
        while True:
            calls = requests.get()
            results = [getattr(target, name)(*args) for name, *args in calls]
            if calls[-1][0] == CLOSE:
                results[-1] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                answers.put(results)
                return
            answers.put(results)
    except BaseException:  # noqa: BLE001 - reported to the twin, which raises it
        answers.put(_Failure(traceback.format_exc()))


def _end_with_the_twin() -> None:
    """End this process the moment the twin's ends without a `close` (killed), whatever this
    one is doing. Its queue would never tell: this process holds both ends of each pipe, so a
    read never sees the end of one, and a block the twin died sending would be waited for
    for ever. Its uncommitted group rolls back with it, as the twin's run is lost anyway."""
    twin = multiprocessing.parent_process()
    if twin is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([twin.sentinel])
        os._exit(TWIN_GONE)

    threading.Thread(target=watch, name="twin-watch", daemon=True).start()


class CoreProcess:
    """A child process running `InProcessTarget(settings, store_url, start)`."""

    def __init__(self, settings: CoreSettings, store_url: str, start: datetime) -> None:
        context = multiprocessing.get_context("forkserver")
        # the fork server, started once per twin, imports the core for every child it forks
        context.set_forkserver_preload([__name__])
        self._requests = context.Queue()
        self._answers = context.Queue()
        self._process = context.Process(
            target=_serve,
            args=(self._requests, self._answers, settings, store_url, start, gc.get_threshold()),
            name="twin-core",
            daemon=True,  # never outlives the twin
        )
        self._failed = False
        self._process.start()
        # The twin only reads the answers: without its own write end of their pipe, a core's
        # process that dies reads as the end of it, even halfway through an answer (which
        # would otherwise be waited for for ever).
        self._answers._writer.close()

    def send(self, calls: list[Call]) -> None:
        """Queue a block of calls (answered in order by one `receive`)."""
        self._requests.put(calls)

    def receive(self, wait: bool = True) -> list[Any] | None:
        """The results of the oldest unanswered block; None if `wait` is false and they are
        not there yet. `CoreProcessError` if the core failed or its process died."""
        while True:
            try:
                answer = self._answers.get(timeout=LOOK) if wait else self._answers.get_nowait()
            except queue.Empty:
                if self._process.is_alive():
                    if not wait:
                        return None
                    continue
                answer = self._last_word()
            except (EOFError, OSError):  # the pipe ended, or ended inside an answer
                raise self._died() from None
            if isinstance(answer, _Failure):
                self._failed = True
                raise CoreProcessError(f"the core's process failed:\n{answer.text}")
            return answer

    def _last_word(self) -> Any:
        """What the ended process wrote last (all of it is in the pipe once it has ended)."""
        try:
            return self._answers.get(timeout=LOOK)
        except (queue.Empty, EOFError, OSError):
            raise self._died() from None

    def _died(self) -> CoreProcessError:
        self._process.join(timeout=LOOK)  # its exit code, once the end of the pipe is seen
        self._failed, code = True, self._process.exitcode
        return CoreProcessError(f"the core's process died (exit code {code})")

    @property
    def alive(self) -> bool:
        """Whether the core still answers (not once it has failed, even while exiting)."""
        return not self._failed and self._process.is_alive()

    def stop(self) -> None:
        """Wait briefly for the process to end, then end it; release the queues."""
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._requests.cancel_join_thread()  # what the core never read is no longer wanted
        self._requests.close()
        self._answers.close()
