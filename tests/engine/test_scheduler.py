"""The scheduler that runs a step's members at once: dependencies, failures, cancellation, the bound."""

from __future__ import annotations

import threading

import pytest

from orchestrator.engine.scheduler import Task, run_group


def test_independent_tasks_all_run_and_keep_their_order():
    out = run_group([Task(str(i), lambda i=i: i * i) for i in range(5)], max_workers=3)
    assert list(out) == ["0", "1", "2", "3", "4"]
    assert [o.value for o in out.values()] == [0, 1, 4, 9, 16]


def test_a_task_starts_only_after_what_it_depends_on():
    order: list[str] = []
    lock = threading.Lock()

    def job(name):
        def run():
            with lock:
                order.append(name)
            return name

        return run

    tasks = [Task("c", job("c"), ("a", "b")), Task("a", job("a")), Task("b", job("b"), ("a",))]
    out = run_group(tasks, max_workers=4)
    assert all(o.ok for o in out.values())
    assert order == ["a", "b", "c"]


def test_a_failure_fails_alone_and_its_dependents_never_start():
    ran: list[str] = []

    def boom():
        raise RuntimeError("broken")

    tasks = [
        Task("bad", boom),
        Task("after-bad", lambda: ran.append("after-bad")),
        Task("fine", lambda: ran.append("fine")),
    ]
    tasks[1] = Task("after-bad", tasks[1].run, ("bad",))
    tasks.append(Task("after-after", lambda: ran.append("after-after"), ("after-bad",)))
    out = run_group(tasks, max_workers=2)
    assert isinstance(out["bad"].error, RuntimeError) and not out["bad"].ok
    assert not out["after-bad"].started and not out["after-after"].started
    assert out["fine"].ok and ran == ["fine"]


def test_never_more_than_max_workers_at_once():
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    started = threading.Semaphore(0)

    def job():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        started.release()
        release.wait(10)
        with lock:
            running -= 1

    def opener():
        for _ in range(2):
            started.acquire()
        release.set()

    threading.Thread(target=opener).start()
    run_group([Task(str(i), job) for i in range(6)], max_workers=2)
    assert peak == 2


def test_a_cancelled_group_starts_nothing_more():
    cancel = threading.Event()
    ran: list[str] = []

    def first():
        cancel.set()
        ran.append("first")

    out = run_group(
        [Task("a", first), Task("b", lambda: ran.append("b"), ("a",))], max_workers=1, cancel=cancel
    )
    assert ran == ["first"] and out["a"].ok and not out["b"].started


def test_cycles_and_unknown_dependencies():
    with pytest.raises(ValueError, match="unknown dependencies: z"):
        run_group([Task("a", lambda: 1, ("z",))], max_workers=1)
    out = run_group([Task("a", lambda: 1, ("b",)), Task("b", lambda: 2, ("a",))], max_workers=1)
    assert not out["a"].started and isinstance(out["a"].error, ValueError)
    with pytest.raises(ValueError, match="unique"):
        run_group([Task("a", lambda: 1), Task("a", lambda: 2)], max_workers=1)
