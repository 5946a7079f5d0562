"""One executor for many independent pieces of work: in-process by default, Ray when asked.

Sweeps (export -> validate -> profile per cell), latency tables and corpus inference hand their
work to an :class:`Executor` as :class:`Task` values and read back :class:`TaskOutcome` values
as tasks finish. The executor schedules nothing of its own: in-process it is a process pool for
CPU work and one worker for measurements; on Ray it is Ray's own scheduler, steered by
resources.

- ``kind="cpu"`` tasks (exports, validation) ask only for CPUs and run anywhere.
- ``kind="measure"`` tasks run one at a time per device. In-process they run serially (two
  measurements at once on one machine spoil both). On Ray a task for device profile ``P``
  requests the custom resource ``edgesdk.device.P: 1``; a device node advertises it with
  ``ray start --address=HEAD --resources='{"edgesdk.device.P": 1}'``, so Ray sends it that
  profile's measurements one at a time. A measurement with no device (``device=None``) asks
  only for a CPU.

Task functions must be importable top-level functions (they cross process boundaries by
reference); their arguments and return values must pickle. A task that raises an
:class:`~edgesdk.errors.EdgeSDKError` fails with that error's exit code, anything else with 1;
a worker that dies fails its task and the others go on.

This module imports no torch and nothing from the layers of edgesdk; Ray is imported only by
:class:`RayExecutor` (the optional ``edgesdk[ray]`` extra).
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import socket
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgesdk.errors import BackendUnavailable, EdgeSDKError, UsageError

DEVICE_RESOURCE_PREFIX = "edgesdk.device."
TASK_KINDS = ("cpu", "measure")


def device_resource(profile: str) -> str:
    """The Ray custom resource a node advertises to receive ``profile``'s measurements."""
    return DEVICE_RESOURCE_PREFIX + profile


@dataclass(frozen=True)
class Task:
    """One piece of work.

    Attributes:
        key: names the task in its outcome (unique within one ``run``).
        function: an importable top-level function.
        arguments: positional arguments for ``function`` (picklable).
        kind: ``"cpu"`` (export, validation: anywhere) or ``"measure"`` (one at a time per device).
        device: device profile a ``measure`` task must run on (None: any CPU).
    """

    key: str
    function: Callable[..., Any]
    arguments: tuple = ()
    kind: str = "cpu"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise UsageError(f"task kind must be one of {', '.join(TASK_KINDS)}, not {self.kind!r}")
        if self.device is not None and self.kind != "measure":
            raise UsageError(f"task {self.key}: only measure tasks name a device")


@dataclass(frozen=True)
class TaskOutcome:
    """What one task gave: its value, or its error and exit code; and where it ran.

    Attributes:
        key: the task's key.
        value: the function's return value (None on failure).
        error: one line (None on success).
        exit_code: 0 on success, else the error's DESIGN.md exit code (1 for unexpected errors).
        node: where it ran: ``host:pid`` in-process, the Ray node id on Ray.
    """

    key: str
    value: Any = None
    error: str | None = None
    exit_code: int = 0
    node: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Reply:
    """What a worker sends back (a picklable value, never a live exception)."""

    value: Any = None
    error: str | None = None
    exit_code: int = 0
    node: str | None = None
    details: str = field(default="", repr=False)


@dataclass(frozen=True)
class _Retry:
    """The task was sent again (its worker died with others' work in flight): wait on ``handle``."""

    handle: Any


def _call(function: Callable[..., Any], arguments: tuple, node: str | None = None) -> _Reply:
    """Run ``function`` in a worker; errors come back as a reply, not as an exception."""
    where = node or f"{socket.gethostname()}:{os.getpid()}"
    try:
        return _Reply(value=function(*arguments), node=where)
    except EdgeSDKError as error:
        return _Reply(error=str(error), exit_code=error.exit_code, node=where)
    except Exception as error:  # a worker reports any failure of its task, the sweep goes on
        return _Reply(error=f"{type(error).__name__}: {error}", exit_code=1, node=where,
                      details=traceback.format_exc())


class Executor:
    """Runs tasks and yields their outcomes as they finish.

    Subclasses implement ``_submit(task) -> handle``, ``_wait(handles) -> finished handles``,
    ``_reply(handle, task) -> _Reply`` and ``close()``.
    """

    name = "executor"

    def run(self, tasks: Iterable[Task],
            follow: Callable[[TaskOutcome], Sequence[Task]] | None = None) -> Iterator[TaskOutcome]:
        """Submit ``tasks``; yield each outcome as it finishes.

        ``follow(outcome)`` may return further tasks, submitted at once (a measurement after
        its export). Closing the generator early (or an interrupt) cancels what has not run.
        """
        pending: dict[Any, Task] = {}
        ready: list[TaskOutcome] = []

        def submit(task: Task) -> None:
            refusal = self._refuse(task)
            if refusal is None:
                pending[self._submit(task)] = task
            else:  # never placeable here: fails now, the others go on
                ready.append(TaskOutcome(task.key, error=refusal, exit_code=BackendUnavailable.exit_code))

        try:
            for task in tasks:
                submit(task)
            while pending or ready:
                if not ready:
                    for handle in self._wait(list(pending)):
                        task = pending.pop(handle)
                        reply = self._reply(handle, task)
                        if isinstance(reply, _Retry):
                            pending[reply.handle] = task
                            continue
                        ready.append(TaskOutcome(task.key, reply.value, reply.error, reply.exit_code, reply.node))
                if not ready:
                    continue  # every finished handle was sent again
                outcome = ready.pop(0)
                yield outcome
                for successor in (follow(outcome) if follow else ()):
                    submit(successor)
        finally:
            if pending:
                self._cancel(list(pending))

    def _refuse(self, task: Task) -> str | None:
        """Why this executor can never place ``task`` (None: it can)."""
        return None

    def _submit(self, task: Task) -> Any:
        raise NotImplementedError

    def _wait(self, handles: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _reply(self, handle: Any, task: Task) -> "_Reply | _Retry":
        raise NotImplementedError

    def _cancel(self, handles: list[Any]) -> None:
        """Drop work that has not finished (after an interrupt or an early close)."""

    def close(self) -> None:
        """Release workers (and a Ray instance this executor started)."""

    def abort(self) -> None:
        """Stop at once after an interrupt: work in flight is dropped, not waited for."""
        self.close()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self.abort()
        else:
            self.close()


class InProcessExecutor(Executor):
    """This machine only, no Ray: a process pool for CPU tasks, one worker for measurements.

    Args:
        cpu_workers: processes for ``cpu`` tasks (default: up to 2, never more than the CPUs).
        device: the profile this machine measures as; a measure task for another profile fails
            with exit 5 (BackendUnavailable) instead of being measured on the wrong device.
    """

    name = "in-process"

    retries = 1

    def __init__(self, cpu_workers: int | None = None, device: str | None = None):
        if cpu_workers is not None and cpu_workers < 1:
            raise UsageError(f"cpu_workers must be at least 1, not {cpu_workers}")
        self.cpu_workers = cpu_workers or max(1, min(2, os.cpu_count() or 1))
        self.device = device
        # spawn: a forked child of a process with threads (rich, onnxruntime) can deadlock.
        self._context = multiprocessing.get_context("spawn")
        self._pools: dict[str, futures.ProcessPoolExecutor] = {}
        self._attempts: dict[str, int] = {}
        self._pool_of: dict[Any, futures.ProcessPoolExecutor] = {}
        self._solo_pools: list[futures.ProcessPoolExecutor] = []  # one per retried task
        # Children that existed before this executor are someone else's: abort() spares them.
        self._older_children = {child.pid for child in multiprocessing.active_children()}

    def _pool(self, kind: str) -> futures.ProcessPoolExecutor:
        if kind not in self._pools:
            workers = self.cpu_workers if kind == "cpu" else 1  # measurements: strictly one at a time
            self._pools[kind] = futures.ProcessPoolExecutor(max_workers=workers, mp_context=self._context)
        return self._pools[kind]

    def _refuse(self, task: Task) -> str | None:
        if task.kind == "measure" and task.device not in (None, self.device):
            return (f"device profile {task.device!r} is not this machine ({self.device}); measure it on a Ray "
                    f"cluster where a node advertises {device_resource(task.device)} (--ray-address)")
        return None

    def _submit(self, task: Task) -> Any:
        pool = self._pool(task.kind)
        handle = pool.submit(_call, task.function, task.arguments)
        self._pool_of[handle] = pool
        return handle

    def _wait(self, handles: list[Any]) -> list[Any]:
        done, _ = futures.wait(handles, return_when=futures.FIRST_COMPLETED)
        return [handle for handle in handles if handle in done]

    def _reply(self, handle: Any, task: Task) -> _Reply | _Retry:
        try:
            reply = handle.result()
            self._pool_of.pop(handle, None)
            return reply
        except futures.process.BrokenProcessPool as error:
            # A worker died (killed, out of memory, a crash in native code). The pool then fails
            # every task it held, so each gets one more try: the others go on, and the task that
            # kills its worker fails on its second try.
            broken = self._pool_of.pop(handle, None)
            if broken is not None and self._pools.get(task.kind) is broken:
                self._pools.pop(task.kind).shutdown(wait=False, cancel_futures=False)
            attempts = self._attempts.get(task.key, 0) + 1
            self._attempts[task.key] = attempts
            if attempts <= self.retries:
                # Alone in a process of its own, so a task that kills its worker again takes
                # no one else with it.
                solo = futures.ProcessPoolExecutor(max_workers=1, mp_context=self._context)
                self._solo_pools.append(solo)
                retry = solo.submit(_call, task.function, task.arguments)
                retry.add_done_callback(lambda _: solo.shutdown(wait=False))
                self._pool_of[retry] = solo
                return _Retry(retry)
            return _Reply(error=f"the worker process died ({error})", exit_code=1)
        except futures.CancelledError:
            return _Reply(error="cancelled", exit_code=1)

    def _cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            handle.cancel()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()

    def abort(self) -> None:
        # The pools' workers are the multiprocessing children born since this executor was made:
        # end them rather than wait for an export that may take minutes. They are ended first and
        # then each pool's own manager thread reaps them (shutdown waits for that thread): joining
        # them here while that thread also waits on them races it for the exit status, and the
        # loser sees a dead child as still running.
        ours = [child for child in multiprocessing.active_children() if child.pid not in self._older_children]
        for child in ours:
            child.terminate()
        for pool in [*self._pools.values(), *self._solo_pools]:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()
        self._solo_pools.clear()
        for child in ours:  # a pool already shut down (a finished retry) no longer reaps its worker
            child.join(timeout=5)


def import_ray() -> Any:
    """The ray module, or BackendUnavailable (exit 5) naming the extra to install."""
    # Ray Data's usage collection starts a driver thread that queries a Prometheus on
    # localhost every 10 s for the rest of the process, formatting a traceback each time it is
    # unreachable. On CPython 3.11 that races with ast use elsewhere (torch's exporters):
    # "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). A user's
    # explicit setting wins.
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("Ray is not installed: pip install 'edgesdk[ray]'") from None
    return ray


def _ray_call(function: Callable[..., Any], arguments: tuple) -> _Reply:
    import ray

    return _call(function, arguments, node=ray.get_runtime_context().get_node_id())


class RayExecutor(Executor):
    """Ray Core tasks: CPU tasks anywhere, measurements on the nodes that advertise the device.

    Args:
        address: a cluster to join (``ray://...`` or ``HOST:PORT``); None starts a new local Ray
            instance explicitly (``address="local"``), never attaching to an inherited
            ``RAY_ADDRESS``.
        num_cpus, object_store_memory: sizes of a local instance (ignored when joining).
        resources: custom resources of a local instance, e.g. ``{"edgesdk.device.x86-64": 1}``.
        max_retries: how often Ray retries a task whose worker died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 object_store_memory: int | None = None, resources: dict[str, float] | None = None,
                 max_retries: int = 1):
        ray = import_ray()
        self._ray = ray
        self.max_retries = max_retries
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory,
                     resources=resources, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        self.address = address
        self._remote = ray.remote(_ray_call)

    @property
    def ray(self) -> Any:
        """The initialised ray module (for Ray Data, e.g. ``edgesdk map``)."""
        return self._ray

    def cluster_resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def _refuse(self, task: Task) -> str | None:
        if task.kind == "measure" and task.device is not None:
            resource = device_resource(task.device)
            if resource not in self.cluster_resources():
                return (f"no node of the Ray cluster advertises {resource}; start one on that device with "
                        f"ray start --address=HEAD:6379 --resources='{{\"{resource}\": 1}}'")
        return None

    def _submit(self, task: Task) -> Any:
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": self.max_retries}
        if task.kind == "measure" and task.device is not None:
            options["resources"] = {device_resource(task.device): 1}
        return self._remote.options(**options).remote(task.function, task.arguments)

    def _wait(self, handles: list[Any]) -> list[Any]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        return ready

    def _reply(self, handle: Any, task: Task) -> _Reply:
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayError as error:  # worker died past its retries, node lost
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return _Reply(error=f"{type(error).__name__}: {first}", exit_code=1)

    def _cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            try:
                self._ray.cancel(handle, force=True)
            except Exception:  # already finished or already gone: nothing to cancel
                pass

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(ray: bool = False, ray_address: str | None = None, *, cpu_workers: int | None = None,
                  device: str | None = None, num_cpus: int | None = None,
                  object_store_memory: int | None = None) -> Executor:
    """The CLI's choice: in-process unless ``--ray`` (local instance) or ``--ray-address``."""
    if ray and ray_address:
        raise UsageError("give --ray (start a local Ray) or --ray-address (join a cluster), not both")
    if ray or ray_address:
        # A local instance is this machine: it advertises this machine's profile, so its
        # measurements queue one at a time like on any device node.
        resources = {device_resource(device): 1} if device and not ray_address else None
        return RayExecutor(ray_address, num_cpus=num_cpus, object_store_memory=object_store_memory,
                           resources=resources)
    return InProcessExecutor(cpu_workers=cpu_workers, device=device)
