"""Run a job's partitions: in this process, on a local dask cluster, or on an existing one.

The engine is dask.distributed (DESIGN.md §7: an existing engine, no home-made scheduler). One
task per partition is submitted; each task reads its own partition and writes its partial
results itself, so only small summaries travel back. :func:`run_tasks` reports each finished
partition through the ``progress`` callback (counts, timing, an estimate of the time left) and
collects failures by partition name while the other partitions finish. It knows nothing of
surveys: a task is a picklable function and its arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import PipelineError, UsageError

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
Task = tuple[str, tuple[Any, ...]]


def _noop(_: str) -> None:
    pass


def _describe(err: BaseException) -> str:
    if isinstance(err, PipelineError):
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class _Tally:
    """The progress line over partitions: done/total, failures, counts, timing."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.parcels = 0
        self.start = time.perf_counter()
        self.progress = progress

    def report(self, name: str, seconds: float, result: Any = None, error: str | None = None):
        self.done += 1
        if error is not None:
            self.failed += 1
        elif isinstance(result, dict):
            self.parcels += int(result.get("parcels", 0))
            # the task's own time where it tells it (on a cluster, tasks wait in a queue)
            seconds = float(result.get("seconds", seconds))
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        width = 20
        filled = round(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        what = f"FAILED: {error}" if error is not None else f"done in {seconds:.1f}s"
        self.progress(
            f"[{bar}] {self.done}/{self.total} partitions"
            + (f" ({self.failed} failed)" if self.failed else "")
            + f", {self.parcels:,} parcels, {elapsed:.0f}s elapsed, ~{left:.0f}s left"
            + f" | {name} {what}"
        )


def run_tasks(
    func: Callable[..., Any],
    tasks: Sequence[Task],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress = _noop,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``func(*args)`` for each ``(name, args)`` task; collect results and failures.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled to dask workers).
    tasks : sequence of (name, args)
        One per partition; names are unique.
    workers : int, optional
        Start a local dask cluster of this many single-threaded worker processes (loopback).
    scheduler : str, optional
        The address of an existing dask scheduler (``tcp://HOST:PORT``).
    progress : callable
        Receives one line per finished task.

    Returns
    -------
    results : dict
        Task name → the function's return value, for the tasks that succeeded.
    failed : dict
        Task name → a one-line error, for the tasks that raised.

    Raises
    ------
    UsageError
        The scheduler cannot be reached.

    Examples
    --------
    >>> run_tasks(pow, [("a", (2, 3)), ("b", (2, "x"))])[0]
    {'a': 8}
    """
    with Executor(workers, scheduler) as executor:
        return executor.run(func, tasks, progress=progress)


class Executor:
    """Where a job's tasks run: this process, a local dask cluster of ``workers`` processes, or
    the cluster of ``scheduler``; several batches of tasks on one cluster (the partitions, then
    the merge's), started at the first batch and closed on leaving the ``with`` block."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        self.workers, self.scheduler = workers, scheduler
        self._cluster: Any = None
        self._client: Any = None
        self._starting: Background | None = None

    @property
    def distributed(self) -> bool:
        """Tasks run in other processes (a dask cluster)."""
        return self.workers is not None or self.scheduler is not None

    @property
    def slots(self) -> int:
        """How many tasks run at once: the workers (of the scheduler's cluster, asked of it),
        1 in this process."""
        if not self.distributed:
            return 1
        if self.scheduler is None:
            return int(self.workers or 1)
        return max(1, sum(self._connect().nthreads().values()))

    def __enter__(self) -> Executor:
        return self

    def start(self) -> None:
        """Start the cluster (or connect to the scheduler) in a background thread, so that what
        the caller does meanwhile (planning the partitions) overlaps with the workers' start;
        the first batch of tasks waits for it, and an error starting it is raised there. Nothing
        to start in this process."""
        if not self.distributed or self._client is not None or self._starting is not None:
            return
        self._starting = Background(self._open, "blacksoil-cluster")

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(
        self,
        func: Callable[..., Any],
        tasks: Sequence[Task],
        *,
        progress: Progress = _noop,
        stop_on_error: bool = False,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Run ``func(*args)`` for each ``(name, args)`` task, as :func:`run_tasks`; with
        ``stop_on_error`` the first task to fail raises its own error here instead."""
        if not tasks:
            return {}, {}
        tally = _Tally(len(tasks), progress)
        if not self.distributed:
            return _in_process(func, tasks, tally, stop_on_error)
        return _on_dask(func, tasks, tally, self._connect(), stop_on_error)

    def _connect(self) -> Any:
        """The client, once the start begun by :meth:`start` (its error raised here) or begun
        now is done."""
        if self._starting is not None:
            self._starting.result()  # (interrupted, it stays for close to wait for)
            self._starting = None
        if self._client is None:
            self._open()
        return self._client

    def _open(self) -> None:
        """Connect to the scheduler, or start the local cluster."""
        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            try:
                self._client = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as err:
                raise UsageError(
                    f"--scheduler {self.scheduler}: cannot reach the dask scheduler ({err})"
                ) from err
            return
        with _forked_workers():
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # no fixed port: with None the scheduler's web server still takes 8787, and a
                # second cluster on the machine (another survey, a notebook's) warns of it
                dashboard_address="127.0.0.1:0",
                preload=[__name__],  # its dask_setup: the workers leave Ctrl-C to this process
            )
        self._client = Client(self._cluster)

    def close(self) -> None:
        if self._starting is not None:
            self._starting.wait()  # a cluster still starting is closed once it has started
            self._starting = None
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()


#: the modules a local cluster's worker processes are forked with, imported once
_WORKER_MODULES = ["distributed", f"{__package__}.runner"]


@contextlib.contextmanager
def _forked_workers() -> Iterator[None]:
    """Within it, a local cluster's worker processes are forked from a server process that has
    imported dask and this package once (multiprocessing's ``forkserver``), instead of started
    afresh (dask's default, ``spawn``), each importing them again: on two cores the workers'
    imports (about a second of CPU each) would otherwise be taken from the planning that runs
    beside the cluster's start. Where there is no forkserver (Windows), or dask's
    ``distributed.worker.multiprocessing-method`` is set to something else than its default,
    nothing changes.

    The server has PROJ's database open (pyproj's and GDAL's, opened as they are imported);
    the workers forked from it read it as their own: GDAL makes its PROJ context again in a
    forked process, and PROJ reads the database by offset, never through the shared file
    position that once broke forked readers (pyproj issue 426). Checked with four forked
    processes looking up CRSs, transforming and writing GeoPackages at once."""
    import multiprocessing

    import dask
    from distributed.utils import get_mp_context

    key = "distributed.worker.multiprocessing-method"
    usable = "forkserver" in multiprocessing.get_all_start_methods()
    if not usable or dask.config.get(key) != "spawn":
        yield
        return
    with dask.config.set({key: "forkserver"}):
        get_mp_context()  # dask's own preload, set at its first call, then ours in its place
        multiprocessing.get_context("forkserver").set_forkserver_preload(_WORKER_MODULES)
        yield


class Background:
    """``func()`` run in a thread of its own, started at once; :meth:`result` waits for it and
    gives what it returned, or raises what it raised, in the caller's thread."""

    def __init__(self, func: Callable[[], Any], name: str) -> None:
        self._outcome: tuple[Any, BaseException | None] = (None, None)

        def run() -> None:
            try:
                self._outcome = (func(), None)
            except BaseException as err:  # raised again by result(), in the caller's thread
                self._outcome = (None, err)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Wait for the call to end."""
        self._thread.join()

    def result(self) -> Any:
        """Wait for the call to end; what it returned, or raise what it raised."""
        self._thread.join()
        value, err = self._outcome
        if err is not None:
            raise err
        return value


def _in_process(
    func: Callable[..., Any], tasks: Sequence[Task], tally: _Tally, stop_on_error: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, args in tasks:
        t0 = time.perf_counter()
        try:
            results[name] = func(*args)
        except Exception as err:  # a failed partition is reported; the others go on
            if stop_on_error:
                raise
            failed[name] = _describe(err)
            logger.warning("partition %s failed: %s", name, failed[name])
            _log_where(name, err.__traceback__)
            tally.report(name, time.perf_counter() - t0, error=failed[name])
            continue
        finally:
            release_memory()
        tally.report(name, time.perf_counter() - t0, results[name])
    return results, failed


def _log_where(name: str, tb: Any) -> None:
    """Where a partition failed (its traceback), for the debug log (``-vv``) only: the console
    gets the one-line reason."""
    logger.debug("partition %s: where it failed:\n%s", name, "".join(traceback.format_tb(tb)))


def release_memory() -> None:
    """Give the memory of a finished partition back to the system: collect cycles, then ask
    Arrow's allocator and glibc to return their free pages (``release_unused``,
    ``malloc_trim``), which they otherwise keep, so that one process running partitions one
    after another peaks at its largest partition, not at their sum of leftovers. (Dask's worker
    processes do the same through MALLOC_TRIM_THRESHOLD_.) Without glibc, no ``malloc_trim``."""
    gc.collect()
    pa = sys.modules.get("pyarrow")
    if pa is not None:  # Arrow's own allocator keeps freed pages too
        pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def dask_setup(worker: object) -> None:
    """Run by each worker of the local cluster as it starts (a dask preload): it ignores
    Ctrl-C. A terminal sends SIGINT to every process of the command, and a worker process
    would die of it printing its tracebacks; this process alone handles the interrupt and
    closes the cluster, which stops the workers. The warning dask logs for each task a closing
    worker cancels (only a closing worker does) is left out too, and so are the errors, with
    their tracebacks, that it logs for a task that raised (the partition is reported by name,
    in one line, by the first process; its traceback goes to that process's debug log) and for
    a scheduler it lost (a busy worker's heartbeat as the first process stops the cluster after
    Ctrl-C: it says so itself)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_CancelledOnClose())
    logging.getLogger("distributed.worker").addFilter(_TaskFailed())


class _CancelledOnClose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith("ended with CancelledError")


class _TaskFailed(logging.Filter):
    said = ("Compute Failed", "Failed to communicate with scheduler")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.said)


def _on_dask(
    func: Callable[..., Any],
    tasks: Sequence[Task],
    tally: _Tally,
    client: Any,
    stop_on_error: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    from distributed import as_completed

    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    started = time.perf_counter()
    # earlier tasks first: the caller lists the largest partitions first
    futures = {
        client.submit(func, *args, key=f"blacksoil-{func.__name__}-{name}-{id(tasks)}",
                      pure=False, priority=len(tasks) - i): name
        for i, (name, args) in enumerate(tasks)
    }  # fmt: skip
    for future in as_completed(futures):
        name = futures[future]
        seconds = time.perf_counter() - started
        if future.status == "error":
            if stop_on_error:
                raise future.exception()
            failed[name] = _describe(future.exception())
            logger.warning("partition %s failed: %s", name, failed[name])
            _log_where(name, future.traceback())
            tally.report(name, seconds, error=failed[name])
        else:
            results[name] = future.result()
            tally.report(name, seconds, results[name])
        future.release()
    return results, failed
