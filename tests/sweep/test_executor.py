"""The in-process executor: values, typed errors, dead workers, serial measurements, device refusals."""
from __future__ import annotations

import multiprocessing
import sys
import time

import pytest

from edgesdk.errors import BackendUnavailable, UsageError
from edgesdk.executor import InProcessExecutor, Task, make_executor
from tests.sweep import workloads


def test_values_errors_and_a_dead_worker_each_land_in_their_own_outcome():
    tasks = [Task("a", workloads.square, (3,)), Task("b", workloads.fail_conversion, ("net",)),
             Task("c", workloads.crash, (0,)), Task("d", workloads.square, (4,))]
    with InProcessExecutor(cpu_workers=1, device="x86-64") as executor:
        outcomes = {o.key: o for o in executor.run(tasks)}
    assert (outcomes["a"].value, outcomes["a"].exit_code) == (9, 0)
    assert (outcomes["b"].error, outcomes["b"].exit_code) == ("cannot convert net", 3)
    assert not outcomes["c"].ok and outcomes["c"].exit_code == 1 and "died" in outcomes["c"].error
    assert outcomes["d"].value == 16  # the crash took one task, not the sweep


def test_measurements_run_one_at_a_time_and_follow_their_predecessor():
    def follow(outcome):
        return [Task(f"measure{outcome.value}", workloads.hold, (0.3,), kind="measure", device="x86-64")] \
            if outcome.key.startswith("cpu") else []

    with InProcessExecutor(cpu_workers=2, device="x86-64") as executor:
        outcomes = list(executor.run([Task(f"cpu{i}", workloads.square, (i,)) for i in range(3)], follow=follow))
    windows = sorted(o.value for o in outcomes if o.key.startswith("measure"))
    assert [o.key for o in outcomes if o.key.startswith("measure")] and len(windows) == 3
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end  # no two measurements overlap


def test_a_measurement_for_another_device_is_refused_with_exit_5_not_measured_here():
    with InProcessExecutor(cpu_workers=1, device="x86-64") as executor:
        (outcome,) = list(executor.run([Task("m", workloads.square, (2,), kind="measure", device="jetson-orin")]))
    assert outcome.exit_code == BackendUnavailable.exit_code
    assert "edgesdk.device.jetson-orin" in outcome.error and outcome.value is None


def test_task_kinds_are_checked():
    with pytest.raises(UsageError, match="kind"):
        Task("x", workloads.square, (1,), kind="gpu")
    with pytest.raises(UsageError, match="only measure tasks"):
        Task("x", workloads.square, (1,), device="x86-64")


def test_asking_for_ray_without_ray_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendUnavailable, match=r"edgesdk\[ray\]") as raised:
        make_executor(ray=True)
    assert raised.value.exit_code == 5
    with pytest.raises(UsageError, match="not both"):
        make_executor(ray=True, ray_address="127.0.0.1:6379")


def test_an_interrupt_drops_work_in_flight_instead_of_waiting_for_it():
    def follow(outcome):
        raise KeyboardInterrupt  # Ctrl-C as the first result comes in

    children_before = multiprocessing.active_children()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with InProcessExecutor(cpu_workers=2, device="x86-64") as executor:
            for _ in executor.run([Task("quick", workloads.square, (2,)), Task("long", workloads.hold, (60.0,))],
                                  follow=follow):
                pass
    assert time.perf_counter() - started < 45  # the 60 s task was not waited for
    assert multiprocessing.active_children() == children_before
