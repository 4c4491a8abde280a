"""How a run executing in this process stops and what its errors say: shared by the executor (defs/jobs.py),
the failure alerts (defs/automation.py) and the CLI (cli/launch.py).

Signals are the main thread's, so the stop request is process state: `stop_on_signals` records SIGINT and
SIGTERM while the CLI executes a run, and the executor stops the run before its next step.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading

# A step's error when the run was stopped by SIGINT/SIGTERM (Dagster turns the signal into a step failure)
INTERRUPTED = "interrupted (Ctrl-C or a termination signal)"


# --- stopping a run: Ctrl-C and SIGTERM -------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# sent to the main thread to end a blocking call there (EINTR), so Python runs the SIGINT handler at once
WAKE_SIGNAL = signal.SIGUSR1
REPEAT_SECONDS = 2.0  # until a step ends, the interrupt is delivered again this often (Python may lose it)
_stop = threading.Event()
_step_ended = threading.Event()  # a step ended after the stop was requested: the interrupt got through


def stop_requested() -> bool:
    """True once SIGINT or SIGTERM arrived while this process executes a run (inside ``stop_on_signals``)."""
    return _stop.is_set()


def step_ended_after_stop() -> None:
    """Told by the executor (jobs.py): a step ended after the stop request, so the step that ran then was
    stopped (or finished); later steps fail as they start, and the interrupt need not be repeated."""
    _step_ended.set()


def _record_signal(signum, frame) -> None:
    _stop.set()


def _ignore_signal(signum, frame) -> None:
    pass


@contextlib.contextmanager
def stop_on_signals():
    """Record every SIGINT and SIGTERM while a run executes in this process, so that it always stops.

    Dagster swaps in its own handlers while it executes, and the exception its handler raises is lost when
    the signal lands in a finalizer or weakref callback: the run then went on and published. The wakeup fd
    is written by the C-level handler whatever the Python one does, so a thread reading it records every
    signal, and the executor (jobs.py) stops the run before its next step. SIGINT is blocked in this thread
    meanwhile, so the processes Dagster starts (compute-log tails and their watch_orphans.py) inherit
    it blocked: a Ctrl-C reaches this process only (no traceback of theirs), and Dagster
    ends them as the run stops. The reader thread takes the signal instead, then wakes this thread from
    any blocking call (WAKE_SIGNAL), so Dagster's handler still interrupts the step at once.
    """
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        yield
        return
    _stop.clear()
    _step_ended.clear()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    handlers = {signum: signal.signal(signum, _record_signal) for signum in STOP_SIGNALS}
    handlers[WAKE_SIGNAL] = signal.signal(WAKE_SIGNAL, _ignore_signal)
    # started before SIGINT is blocked here, so the reader keeps it unblocked and the kernel delivers it there
    reader = threading.Thread(target=_read_signals, args=(read_fd, threading.get_ident()), daemon=True,
                              name="seg-pipeline-signals")  # fmt: skip
    reader.start()
    wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    unraisable = sys.unraisablehook
    sys.unraisablehook = _without_lost_interrupts(unraisable)
    try:
        yield
    finally:
        sys.unraisablehook = unraisable
        signal.set_wakeup_fd(wakeup_fd)
        os.close(write_fd)  # the reader reads to the end and stops: no wake signal after this
        reader.join()
        os.close(read_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _read_signals(read_fd: int, main_thread: int) -> None:
    while True:
        repeating = _stop.is_set() and not _step_ended.is_set()
        readable, _, _ = select.select([read_fd], [], [], REPEAT_SECONDS if repeating else None)
        if not readable:  # the step goes on: its interrupt was lost (raised inside a finalizer), so again
            _interrupt(main_thread)
            continue
        data = os.read(read_fd, 64)  # one byte per signal, the signal's number; none once the pipe closed
        if not data:
            return
        if any(signum in STOP_SIGNALS for signum in data) and not _stop.is_set():
            _stop.set()
            signal.pthread_kill(main_thread, WAKE_SIGNAL)


def _interrupt(main_thread: int) -> None:
    interrupt_current_step()
    signal.pthread_kill(main_thread, WAKE_SIGNAL)


def _without_lost_interrupts(hook):
    """``sys.unraisablehook`` for the interrupt Python lost in a finalizer: it records the stop (as the wakeup
    fd does) and prints nothing, as its traceback would reach the terminal through Dagster's compute-log tail."""
    import dagster as dg

    interrupts = (KeyboardInterrupt, dg.DagsterExecutionInterruptedError)

    def quiet(unraisable) -> None:
        if issubclass(unraisable.exc_type, interrupts):
            _stop.set()
        else:
            hook(unraisable)

    return quiet


def interrupt_current_step() -> None:
    """Deliver the recorded stop to Dagster's own interrupt handling: its SIGINT handler runs in the main
    thread (as for a real signal). Called as a step starts, it makes the step fail as interrupted at its first
    boundary, before it reads an input."""
    import _thread

    _thread.interrupt_main(signal.SIGINT)


# Dagster's errors around ours: a step's exception, and a retry policy's request or its final "Exceeded max_retries"
_WRAPPERS = ("DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy")


def error_text(error) -> str:
    """The sentence a user needs: the innermost cause, without Dagster's wrapper."""
    if error is None:
        return "unknown error"
    while error.cause is not None and error.cls_name in _WRAPPERS:
        error = error.cause
    if error.cls_name == "DagsterExecutionInterruptedError":
        return INTERRUPTED
    return _first_line_block(error.message)


def _first_line_block(message: str) -> str:
    from seg_pipeline.errors import without_statement_dump

    # Dagster prefixes a Failure with the exception type; users want the sentence we wrote.
    text = message.strip()
    for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return without_statement_dump(text)
