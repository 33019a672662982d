"""A pool of worker processes where a runaway task can be stopped.

Parsing a feed (feedparser, expat) and extracting an article (trafilatura, lxml) run code that a
hostile document can drive into long CPU work or large allocations. ``concurrent.futures``'s
``ProcessPoolExecutor`` cannot stop one task: a worker that never returns holds its slot forever,
and a worker that dies breaks the whole executor. This pool can.

Contract
--------
``await pool.run(fn, *args, **kwargs)`` runs ``fn(*args, **kwargs)`` in one of ``workers``
processes and returns its result, or raises:

- :class:`WorkerTimeout` when the task ran longer than ``timeout`` seconds (counted from the
  moment a ready worker received it: neither the wait for a free worker nor a new worker's
  start counts). The worker is killed (SIGKILL) and a fresh one takes its place for the next
  task.
- :class:`WorkerOutOfMemory` (a :class:`WorkerCrashed`) when the task needed more memory than
  the worker's limit. The worker exits and is replaced.
- :class:`WorkerCrashed` when the worker died for any other reason (a signal, an abort in C
  code). The message names the exit code or signal.
- whatever ``fn`` raised, re-raised in the caller (the exception must be picklable; one that is
  not arrives as a ``RuntimeError`` naming it). The worker stays in service.
- :class:`WorkerCrashed` too when a new worker cannot start (within 60 s).
- ``RuntimeError`` when the pool is closed; ``pickle``'s errors when ``fn`` or its arguments
  cannot be sent (the caller's misuse).

One failure never touches another task: each worker runs one task at a time, and a task that is
stopped takes only its own worker down. ``fn``, its arguments and its result cross a process
boundary by pickle: ``fn`` must be a module-level function (or a ``functools.partial`` of one).

``run`` is safe to call from many tasks of one event loop; at most ``workers`` tasks run at once,
the rest wait in arrival order. Cancelling a ``run`` kills its worker (the task's result could
otherwise arrive later, as the answer to the next task). ``close()`` ends every worker; a ``run``
in flight at that moment raises :class:`WorkerCrashed`.

Limits
------
``memory`` is the address space a task may add to what an idle worker holds, enforced by
``RLIMIT_AS`` set in the worker once it has imported ``preload``: the interpreter and its
libraries take a size that varies with the machine (thread stacks, BLAS buffers), while the
headroom a hostile document can grow into is what must be bounded. Allocations past the limit
fail inside the worker (``MemoryError``), never in the daemon, and never push the machine into
swap or the OOM killer. ``RLIMIT_AS`` is Linux and BSD; elsewhere the limit is not enforced.

Workers start lazily, in a ``forkserver`` (default) or ``spawn`` context, never ``fork``: forking
a process that runs threads (aiosqlite, apprise) can copy a held lock into the child. Starting a
worker blocks for the forkserver's first start (about a second), so it happens in a thread.
``warm()`` starts them ahead, in the background, so that the first tasks do not wait for a start
(the forkserver and a worker's imports: about two seconds on a small machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import socket
import struct
from collections.abc import Callable, Iterable
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_TIMEOUT",
    "WorkerCrashed",
    "WorkerError",
    "WorkerOutOfMemory",
    "WorkerPool",
    "WorkerTimeout",
]

log = logging.getLogger("newsmon")

P = ParamSpec("P")
R = TypeVar("R")

# A real feed parses in under a second (the largest of the real-feeds corpus: 0.2 s; the
# billion-laughs document that expat's amplification limit stops: about 1 s) and an article
# page extracts in at most 2.2 s (extract.py's limits). Ten seconds is far past honest work.
DEFAULT_TIMEOUT: Final = 10.0
# Parsing a 15 MB feed (http.max_body's default) with feedparser peaks below 300 MB over the
# idle worker; 512 MiB leaves room for that and stops an amplification attack long before it
# can hurt a small VM.
DEFAULT_MEMORY: Final = 512 * 2**20
# Modules every worker imports before its limit is set: what the daemon runs in workers.
DEFAULT_PRELOAD: Final = ("monitor.parse", "monitor.extract", "monitor.prepare")

_HEADER = struct.Struct("!Q")  # length prefix of every message on a worker's socket
# A worker's start (the forkserver's first fork, imports) is not the task's time: the task clock
# starts once the worker says it is ready. A start slower than this is a broken worker.
_START_TIMEOUT: Final = 60.0
_READY = b"R"
# What a worker answers: the result, an exception fn raised, or memory ran out.
_OK, _ERROR, _OOM = "ok", "error", "oom"


class WorkerError(Exception):
    """A task did not finish in its worker. Its text is a short reason fit for a feed's log."""


class WorkerTimeout(WorkerError):
    """The task ran past the pool's time limit; its worker was killed."""


class WorkerCrashed(WorkerError):
    """The worker died while running the task (a signal, an abort, the pool closing)."""


class WorkerOutOfMemory(WorkerCrashed):
    """The task needed more memory than the worker's limit allows."""


class _Worker:
    """One process and the parent's end of its socket."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.exitcode: int | None = None  # once reaped
        self._reaping: asyncio.Future[None] | None = None

    async def connect(self) -> None:
        """Wait until the worker has imported its modules and set its limit."""
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)
        if await self.reader.readexactly(1) != _READY:
            raise ConnectionError("worker sent no ready byte")

    async def call(self, payload: bytes) -> tuple[str, Any]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(_HEADER.pack(len(payload)) + payload)
        await self.writer.drain()
        (size,) = _HEADER.unpack(await self.reader.readexactly(_HEADER.size))
        answer: tuple[str, Any] = pickle.loads(await self.reader.readexactly(size))
        return answer

    def hang_up(self) -> None:
        """Close our end: an idle worker reads end of input and exits."""
        if self.writer is not None:
            self.writer.close()
        else:
            self.sock.close()

    def kill(self) -> None:
        if self.exitcode is None and self.process.is_alive():
            self.process.kill()
        self.hang_up()

    def reap(self, grace: float = 5.0) -> asyncio.Future[None]:
        """Wait up to `grace` seconds (in a thread) for the process to end, then kill it, so no
        zombie is left. Every caller awaits the same reap; cancelling one cancels only its wait.
        """
        if self._reaping is None:
            self._reaping = asyncio.ensure_future(self._join(grace))
        return asyncio.shield(self._reaping)

    async def _join(self, grace: float) -> None:
        await asyncio.to_thread(self.process.join, grace)
        if self.process.exitcode is None:
            self.process.kill()
            await asyncio.to_thread(self.process.join)
        self.exitcode = self.process.exitcode
        self.process.close()

    def death(self) -> str:
        code = self.exitcode
        if code is None:
            return "worker died"
        if code < 0:
            try:
                return f"worker died (signal {signal.Signals(-code).name})"
            except ValueError:
                return f"worker died (signal {-code})"
        return f"worker died (exit code {code})"


class WorkerPool:
    """Worker processes with a time limit per task and a memory limit per worker.

    See the module docstring for the contract. Use as ``async with WorkerPool(...) as pool``
    or call :meth:`close` when done.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        memory: int | None = DEFAULT_MEMORY,
        context: str = "forkserver",
        preload: Iterable[str] = DEFAULT_PRELOAD,
    ) -> None:
        """`workers` processes at most; `timeout` seconds per task; `memory` bytes of headroom
        per worker (None: no limit); `context` "forkserver" or "spawn"; `preload` modules each
        worker imports before its limit is set. Raises ValueError for a bad value."""
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if memory is not None and memory <= 0:
            raise ValueError(f"memory must be positive, not {memory}")
        if context not in ("forkserver", "spawn"):
            raise ValueError(f"context must be 'forkserver' or 'spawn', not {context!r}")
        self.workers = workers
        self.timeout = timeout
        self.memory = memory
        self._context: ForkServerContext | SpawnContext = (
            multiprocessing.get_context("forkserver")
            if context == "forkserver"
            else multiprocessing.get_context("spawn")
        )
        self._preload = tuple(preload)
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0  # processes being started now, by run() or warm()
        self._warming: asyncio.Task[None] | None = None
        self._closed = False
        self.started = 0  # processes started so far: replacements show here (tests, metrics)

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` in a worker; see the module docstring for what it raises."""
        self._check_open()
        payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._slots:
            self._check_open()
            worker = self._idle.pop() if self._idle else await self._start()
            self._busy.add(worker)
            healthy = False
            try:
                try:
                    async with asyncio.timeout(self.timeout):
                        kind, value = await worker.call(payload)
                except TimeoutError:
                    raise WorkerTimeout(
                        f"worker stopped: task ran longer than {self.timeout:g}s"
                    ) from None
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    await worker.reap()
                    raise WorkerCrashed(worker.death()) from None
                if kind == _OOM:
                    raise WorkerOutOfMemory(str(value))
                healthy = True
                if kind == _ERROR:
                    raise value
                result: R = value
                return result
            finally:
                self._busy.discard(worker)
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:
                    self._retire(worker)

    def warm(self) -> None:
        """Start idle workers, up to ``workers``, in the background; return at once.

        A worker that fails to start is logged and left to start lazily at the next task; the
        count of processes never passes ``workers``. Idempotent; call it from the event loop.
        """
        if self._warming is None and not self._closed:
            self._warming = asyncio.create_task(self._warm(), name="warm-workers")

    async def close(self) -> None:
        """End every worker. Idle ones exit on their own; busy ones are killed. Idempotent."""
        self._closed = True
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        idle, self._idle = self._idle, []
        busy = list(self._busy)
        for worker in idle:
            worker.hang_up()
        for worker in busy:
            worker.kill()
        await asyncio.gather(*(w.reap(grace=2.0) for w in [*idle, *busy]))

    # --- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("WorkerPool is closed")

    async def _warm(self) -> None:
        async def one() -> None:
            async with self._slots:
                if self._closed or len(self._idle) + len(self._busy) + self._starting >= (
                    self.workers
                ):
                    return
                worker = await self._start()
                if self._closed:
                    self._retire(worker)
                else:
                    self._idle.append(worker)

        for outcome in await asyncio.gather(
            *(one() for _ in range(self.workers)), return_exceptions=True
        ):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, Exception):
                log.warning("worker did not start ahead: %s", outcome)

    async def _start(self) -> _Worker:
        self._starting += 1
        try:
            return await self._start_one()
        finally:
            self._starting -= 1

    async def _start_one(self) -> _Worker:
        ours, theirs = socket.socketpair()
        process = self._context.Process(
            target=_serve,
            args=(theirs, self.memory, self._preload),
            name="newsmon-worker",
            daemon=True,  # never outlives the daemon, even if close() is never reached
        )
        starting = asyncio.ensure_future(asyncio.to_thread(process.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The thread starts the process all the same: stop it once started (close() of a
            # pool still warming up, a cancelled task).
            starting.add_done_callback(functools.partial(_abandon, process, ours, theirs))
            raise
        except BaseException:
            theirs.close()
            ours.close()
            raise
        theirs.close()  # the child holds its own copy; ours must go for EOF to be seen
        self.started += 1
        worker = _Worker(process, ours)
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                await worker.connect()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            worker.kill()
            await worker.reap()
            raise WorkerCrashed(f"worker did not start: {worker.death()}") from None
        except BaseException:
            self._retire(worker)
            raise
        return worker

    def _retire(self, worker: _Worker) -> None:
        """Kill `worker` now and reap it in the background."""
        worker.kill()
        reaping = worker.reap()
        _reaping.add(reaping)
        reaping.add_done_callback(_reaping.discard)


_reaping: set[asyncio.Future[None]] = set()  # keeps background reaps alive until they finish


def _abandon(
    process: BaseProcess, ours: socket.socket, theirs: socket.socket, started: asyncio.Future[None]
) -> None:
    """A worker whose start was cancelled: kill it if it started; multiprocessing reaps it."""
    if not started.cancelled():
        started.exception()  # retrieved: a failed start of an abandoned worker is no news
    theirs.close()
    ours.close()
    with contextlib.suppress(ValueError, AssertionError, OSError):
        if process.is_alive():
            process.kill()


# --- the worker process ---------------------------------------------------------------------


def _serve(sock: socket.socket, memory: int | None, preload: tuple[str, ...]) -> None:
    """A worker's life: import, set the limit, then run tasks until the socket closes."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One BLAS thread: workers are the parallelism, and every BLAS thread reserves address space
    # that would eat the memory headroom. Read by numpy when it is first imported below.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    for module in preload:
        __import__(module)
    # What the imports built stays for the worker's life: out of the cyclic collector's sight,
    # and the young generation larger between collections (a parse allocates thousands).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    if memory is not None:
        _limit_address_space(memory)
    with sock:
        sock.sendall(_READY)
        while True:
            try:
                payload = _receive(sock)
            except EOFError:
                return
            try:
                fn, args, kwargs = pickle.loads(payload)
                answer: tuple[str, Any] = (_OK, fn(*args, **kwargs))
            except MemoryError:
                answer = (_OOM, f"worker stopped: task needed more than {memory} bytes")
            except Exception as exc:  # SystemExit and kin end the worker: the parent sees it die
                answer = (_ERROR, exc)
            try:
                data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            except MemoryError:
                answer = (_OOM, f"worker stopped: result needed more than {memory} bytes")
                data = pickle.dumps(answer)
            except Exception as exc:  # an unpicklable result or exception
                reason = f"{type(answer[1]).__name__} could not be sent back: {exc}"
                data = pickle.dumps((_ERROR, RuntimeError(reason)))
            exhausted = answer[0] == _OOM
            del answer
            sock.sendall(_HEADER.pack(len(data)) + data)
            if exhausted:
                # The heap may be fragmented past use and a C library may hold a half-made
                # object: a fresh worker is cheaper than finding out.
                return


def _receive(sock: socket.socket) -> bytes:
    header = _read_exactly(sock, _HEADER.size)
    (size,) = _HEADER.unpack(header)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(min(size - len(buffer), 1 << 20))
        if not chunk:
            raise EOFError
        buffer += chunk
    return bytes(buffer)


def _limit_address_space(memory: int) -> None:
    """RLIMIT_AS = what this process maps now + `memory`; never above the hard limit."""
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0  # no procfs: the limit covers the interpreter too, so it is stricter
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = mapped + memory
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):  # a platform without RLIMIT_AS
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
