"""Body workers: bodies are decoded, redacted, hashed and written in other processes.

Redacting a 1 MiB body holds the GIL for tens of milliseconds; in the proxy's
own process that stalls its event loop, so every request through the proxy
would wait for it. Here each worker is a process of its own
(`python -m agentlog.journal.body_worker NICE`) scheduled as batch work
(SCHED_BATCH), so the event loop keeps its core. A decoder that crashes or
hangs on hostile input costs one worker, which is started again, and never
the proxy.

The proxy side, `BodyWorkers`, keeps two workers, each fed by a thread of
its own: `prompt` stores the plain (not content-encoded) bodies that a
write-ahead request waits for, as an agent's API call sends them; `rest`,
niced so that it gives way to the proxy's event loop, stores everything else:
responses, and compressed request bodies (the bombs), those someone awaits
first. A flood of bombs or of responses thus never delays an agent's plain
request, nor the event loop; and the agent's own builds cannot starve its
requests' bodies. Each worker takes the cheapest job first, then the oldest.

Protocol, over the worker's stdin/stdout: frames of an 8-byte big-endian
length and a pickle. The first frame is (logs root, Redactor); then each job
is a `Job` and each answer a `Done`. Both ends are ours, so pickle is safe;
stdin's EOF (the proxy stopped or died) ends the worker.
"""

import contextlib
import itertools
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from agentlog.journal.bodies import Body, Stored, store
from agentlog.redact import Redactor

_LENGTH = struct.Struct(">Q")
_STOP_RANK = 9  # sorts after every job
# The niceness of each worker (see the module docstring).
NICE = {"prompt": 0, "rest": 10}


@dataclass(frozen=True)
class Job:
    bodies: list[tuple[str, Body, bool]]  # (field name, body, complete), in storing order
    limit: int


@dataclass
class Done:
    outcomes: dict[str, Stored | str]  # per field: what became of it, or why it failed
    secrets: set[str] = field(default_factory=set)  # the exchange's secrets, grown


def run(
    bodies: list[tuple[str, Body, bool]],
    limit: int,
    root: Path,
    redactor: Redactor,
    stored: set[str],
) -> dict[str, Stored | str]:
    """Store each body, in order (in this process: a worker's, or the journal writer's)."""
    outcomes: dict[str, Stored | str] = {}
    for name, body, complete in bodies:
        try:
            outcomes[name] = store(root, body, redactor, stored, limit=limit, complete=complete)
        except Exception as e:  # the event is still worth writing without its body
            outcomes[name] = getattr(e, "strerror", None) or repr(e)
    return outcomes


def _run_job(job: Job, root: Path, redactor: Redactor, stored: set[str]) -> Done:
    outcomes = run(job.bodies, job.limit, root, redactor, stored)
    # The bodies of a job are one exchange's, sharing its set of secrets.
    return Done(outcomes, job.bodies[0][1].secrets if job.bodies else set())


# -- the proxy's side ---------------------------------------------------------


class WorkerFailed(Exception):
    pass


class BodyWorkers:
    """The `prompt` and `rest` worker processes and the threads that feed them."""

    def __init__(self, root: Path, redactor: Redactor) -> None:
        self._root = root
        self._redactor = redactor
        self._jobs: dict[str, queue.PriorityQueue[Any]] = {
            kind: queue.PriorityQueue() for kind in NICE
        }
        self._order = itertools.count()
        self._threads = [
            threading.Thread(
                target=self._serve,
                args=(self._jobs[kind], nice),
                name=f"body-worker-{kind}",
                daemon=True,
            )
            for kind, nice in NICE.items()
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(
        self, job: Job, done: Callable[[Done | str], None], urgent: bool, plain: bool, cost: int
    ) -> None:
        """Run `job`; `done` gets its Done, or why it failed (on our thread)."""
        kind = "prompt" if urgent and plain else "rest"
        self._jobs[kind].put((0 if urgent else 1, cost, next(self._order), job, done))

    def close(self) -> None:
        """Finish the jobs queued so far, then stop the workers."""
        for jobs in self._jobs.values():
            jobs.put((_STOP_RANK, 0, next(self._order), None, None))
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join()

    def _serve(self, jobs: queue.PriorityQueue, nice: int) -> None:
        worker: _Worker | None = None
        with contextlib.suppress(OSError):  # ready before the first body (an import takes ~0.2 s)
            worker = _Worker.spawn(self._root, self._redactor, nice)
        while True:
            *_, job, done = jobs.get()
            if job is None:
                break
            try:
                if worker is not None and not worker.alive:
                    worker.kill()  # died between jobs (killed from outside): reap it
                    worker = None
                if worker is None:
                    worker = _Worker.spawn(self._root, self._redactor, nice)
                outcome: Done | str = worker.run(job)
            except (OSError, WorkerFailed) as e:
                outcome = f"body worker failed: {e}"
                if worker is not None:
                    worker.kill()
                worker = None  # a new one for the next job
            try:
                done(outcome)
            except Exception as e:  # never lose the thread
                print(f"agentlog proxy: body worker callback error: {e!r}", file=sys.stderr)
        if worker is not None:
            worker.stop()


class _Worker:
    """One worker process, driven by one thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()

    @classmethod
    def spawn(cls, root: Path, redactor: Redactor, nice: int) -> "_Worker":
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentlog.journal.body_worker", str(nice)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        worker = cls(proc)
        worker._send((str(root), redactor))
        return worker

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, job: Job) -> Done:
        self._send(job)
        # Bounded work (decoding stops at the cap) takes well under a second
        # per MiB; a worker that takes far longer is stuck on something else.
        deadline = time.monotonic() + 30 + 2 * job.limit / (1 << 20)
        header = self._recv(_LENGTH.size, deadline)
        done = pickle.loads(self._recv(_LENGTH.unpack(header)[0], deadline))
        if not isinstance(done, Done):
            raise WorkerFailed(f"unexpected answer {type(done).__name__}")
        return done

    def _send(self, obj: object) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(self._in, view) :]

    def _recv(self, n: int, deadline: float) -> bytes:
        parts, got = [], 0
        while got < n:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not select.select([self._out], [], [], timeout)[0]:
                raise WorkerFailed("timed out")
            part = os.read(self._out, min(n - got, 1 << 20))
            if not part:
                raise WorkerFailed(f"exited ({self._proc.poll()})")
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def stop(self) -> None:
        """Close its stdin (it exits at EOF) and reap it."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self._proc.stdout.close()  # type: ignore[union-attr]

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]


# -- the worker's side --------------------------------------------------------


def _read_frame(stream) -> object | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None  # EOF: the proxy is gone
    (n,) = _LENGTH.unpack(header)
    data = stream.read(n)
    return None if len(data) < n else pickle.loads(data)


def _write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _batch_priority(nice: int) -> None:
    """Batch work: it never preempts the proxy's event loop when it wakes."""
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(nice)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the proxy decides when we stop
    _batch_priority(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the frames
    frames_in = sys.stdin.buffer
    hello = _read_frame(frames_in)
    if hello is None:
        return 0
    root, redactor = cast(tuple[str, Redactor], hello)
    stored: set[str] = set()
    while (job := _read_frame(frames_in)) is not None:
        assert isinstance(job, Job)
        _write_frame(frames_out, _run_job(job, Path(root), redactor, stored))
    return 0


if __name__ == "__main__":
    # Run the module's own copy: jobs unpickle as agentlog.journal.body_worker.Job.
    from agentlog.journal import body_worker

    raise SystemExit(body_worker.main())
