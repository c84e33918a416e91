"""Per-CLI concurrency across processes: real processes (through orchestrator.proc.run_command) compete
for slots; the test samples how many hold one and checks it against the cap, with and without 429s."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.limits import MachineSlots, RunSlots, SlotUnavailable, Throttle, hold_slots
from orchestrator.proc import child_env, run_command

# One competing process: waits for the go file, takes a slot, holds it, logs when it held it.
WORKER = r"""
import json, os, sys, time
from pathlib import Path
from orchestrator.limits import MachineSlots

home, agent, cap, hold, log, ident = sys.argv[1:7]
slots = MachineSlots(Path(home), {agent: int(cap)}, cooldown_s=600)
go = Path(home) / "go"
def write(**record):
    line = json.dumps({"id": int(ident), **record}) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, line.encode())  # one small O_APPEND write per line: lines never interleave
    os.close(fd)
write(event="ready", t=time.time())
while not go.exists():
    time.sleep(0.01)
slot = slots.acquire(agent, timeout_s=120)
start = time.time()
time.sleep(float(hold))
end = time.time()
write(event="held", start=start, end=end, cap=slot.cap, others=slot.others_held, index=slot.index)
slot.release()
"""


def run_workers(tmp_path: Path, *, count: int, cap: int, hold_s: float, inject_at: int | None = None):
    """`inject_at`: once that many slots are held, the test reports a 429 (as a failed step would)."""
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "log.jsonl"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = child_env(os.environ)
    slots = MachineSlots(home, {"claude": cap}, cooldown_s=600)
    samples: list[int] = []
    limited: list[dict] = []
    results = []
    stop = threading.Event()

    def one(ident: int) -> None:
        argv = [sys.executable, str(script), str(home), "claude", str(cap), str(hold_s), str(log), str(ident)]
        results.append(run_command(argv, tmp_path, env=env, timeout_s=240))

    def sample() -> None:
        while not stop.is_set():
            samples.append(slots.held("claude"))
            if inject_at is not None and not limited and samples[-1] >= inject_at:
                limited.append({"t": time.time(), "cap": slots.rate_limited("claude")})
            time.sleep(0.01)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while (
        len(_events(log, "ready")) < count
        and time.monotonic() < deadline
        and any(t.is_alive() for t in threads)
    ):
        time.sleep(0.05)
    sampler = threading.Thread(target=sample)
    sampler.start()
    (home / "go").touch()  # everyone competes at once
    for thread in threads:
        thread.join()
    stop.set()
    sampler.join()
    assert all(r.ok for r in results), [r.stderr[-500:] for r in results if not r.ok]
    held = _events(log, "held")
    assert len(held) == count
    return held, limited, samples


def _events(log: Path, kind: str) -> list[dict]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["event"] == kind]


def overlap_at(intervals: list[dict], t: float) -> int:
    return sum(1 for i in intervals if i["start"] <= t < i["end"])


def max_overlap(intervals: list[dict], after: float | None = None) -> int:
    """The most intervals holding at once (the count only rises at a start), from `after` on."""
    points = [i["start"] for i in intervals]
    if after is not None:
        points = [p for p in points if p > after] + [after]
    return max((overlap_at(intervals, t) for t in points), default=0)


@pytest.mark.slow
def test_processes_never_hold_more_slots_than_the_cap(tmp_path):
    held, _, samples = run_workers(tmp_path, count=7, cap=3, hold_s=0.6)
    assert max_overlap(held) == 3  # the cap is reached (all compete at once) and never passed
    assert max(samples) <= 3 and max(samples) >= 1
    assert {h["index"] for h in held} <= {0, 1, 2}
    assert all(h["cap"] == 3 and h["others"] <= 2 for h in held)
    print(f"cap 3, 7 processes: peak {max_overlap(held)}; {len(samples)} samples, max {max(samples)}")


@pytest.mark.slow
def test_a_429_lowers_the_cap_for_new_starts_across_processes(tmp_path):
    held, limited, samples = run_workers(tmp_path, count=10, cap=4, hold_s=0.6, inject_at=4)
    assert len(limited) == 1 and limited[0]["cap"] == 2
    assert max(samples) <= 4 and max_overlap(held) <= 4  # never over the configured cap
    before = [h for h in held if h["cap"] == 4]
    after = [h for h in held if h["cap"] == 2]
    assert after, "some processes started after the 429"
    # Once every process that started under the old cap has finished, at most 2 hold a slot.
    drained = max(h["end"] for h in before)
    assert max_overlap(held, after=drained) <= 2
    assert all(h["others"] <= 1 for h in after)
    print(
        f"429 at held=4 -> cap {limited[0]['cap']}; {len(before)} started under cap 4, {len(after)} under cap 2;"
        f" peak {max_overlap(held)}, peak after drain {max_overlap(held, after=drained)}; {len(samples)} samples, max {max(samples)}"
    )
    assert max(overlap_at(held, t) for t in [h["start"] for h in after]) >= 1


def test_a_slot_is_released_when_its_process_is_killed(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "holder.py"
    script.write_text(
        "import signal, sys, time\nfrom pathlib import Path\nfrom orchestrator.limits import MachineSlots\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # only SIGKILL ends it
        "slot = MachineSlots(Path(sys.argv[1]), {'codex': 1}).acquire('codex')\n"
        "Path(sys.argv[2]).touch()\ntime.sleep(120)\n"
    )
    marker = tmp_path / "holding"
    slots = MachineSlots(home, {"codex": 1})
    result = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_command(
                [sys.executable, str(script), str(home), str(marker)],
                tmp_path,
                env=child_env(os.environ),
                timeout_s=8,
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    assert slots.try_acquire("codex") is None and slots.held("codex") == 1
    thread.join()
    assert result[0].timed_out  # run_command ended it
    slot = slots.try_acquire("codex")
    assert slot is not None and slots.held("codex") == 1
    slot.release()
    assert slots.held("codex") == 0


def test_children_do_not_inherit_a_slot(tmp_path):
    slots = MachineSlots(tmp_path, {"gemini": 2})
    with slots.acquire("gemini"):
        probe = (
            "import os\n"
            "for fd in os.listdir('/proc/self/fd'):\n"
            "    try: print(os.readlink('/proc/self/fd/' + fd))\n"
            "    except OSError: pass\n"
        )
        out = run_command([sys.executable, "-c", probe], tmp_path, env=child_env(os.environ)).stdout
        assert "slots" not in out
        assert slots.held("gemini") == 1


def test_a_lowered_cap_holds_back_new_starts_until_enough_finish(tmp_path):
    now = [1000.0]
    slots = MachineSlots(tmp_path, {"claude": 4}, cooldown_s=60, clock=lambda: now[0])
    taken = [slots.try_acquire("claude") for _ in range(4)]
    assert all(taken) and slots.try_acquire("claude") is None
    assert slots.rate_limited("claude") == 2 and slots.cap("claude") == 2
    taken.pop().release()  # 3 still run
    assert slots.try_acquire("claude") is None
    taken.pop().release()
    taken.pop().release()  # 1 runs
    again = slots.try_acquire("claude")
    assert again is not None and again.index < 2 and again.cap == 2 and again.others_held == 1
    assert slots.try_acquire("claude") is None
    assert slots.rate_limited("claude") == 1 and slots.rate_limited("claude") == 1  # never below 1
    now[0] += 61  # the cool-down is over: the configured cap again
    assert slots.cap("claude") == 4
    more = [slots.try_acquire("claude") for _ in range(2)]
    assert all(more) and slots.held("claude") == 4
    for slot in [*taken, again, *more]:
        slot.release()
    assert slots.held("claude") == 0


def test_the_throttle_file_is_shared_and_expires(tmp_path):
    now = [50.0]
    a = Throttle(tmp_path, clock=lambda: now[0])
    b = Throttle(tmp_path, clock=lambda: now[0])  # another process's view
    assert b.cap("codex") is None
    assert a.rate_limited("codex", configured_cap=6, cooldown_s=10) == 3
    assert b.cap("codex") == 3 and b.until("codex") == 60.0
    assert b.rate_limited("codex", configured_cap=6, cooldown_s=10) == 1
    assert a.rate_limited("gemini", configured_cap=2, cooldown_s=100) == 1
    now[0] = 61.0
    assert a.cap("codex") is None and a.cap("gemini") == 1
    a.clear("gemini")
    assert b.cap("gemini") is None
    (tmp_path / "throttle.json").write_text("not json")
    assert a.cap("codex") is None  # a broken file means no throttle, not a crash


def test_acquire_times_out_and_cancels(tmp_path):
    slots = MachineSlots(tmp_path, {"copilot": 1})
    with slots.acquire("copilot"):
        started = time.monotonic()
        with pytest.raises(SlotUnavailable, match="within 0.3 s"):
            slots.acquire("copilot", timeout_s=0.3)
        assert time.monotonic() - started < 0.3 + 5
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(SlotUnavailable, match="cancelled"):
            slots.acquire("copilot", cancel=cancel)
    with slots.acquire("copilot", timeout_s=1) as slot:
        assert slot.held
    assert not slot.held


def test_a_slot_dropped_without_release_is_freed(tmp_path):
    import gc

    slots = MachineSlots(tmp_path, {"claude": 1})
    slot = slots.try_acquire("claude")
    assert slot is not None and slots.try_acquire("claude") is None
    del slot
    gc.collect()
    again = slots.try_acquire("claude")
    assert again is not None
    again.release()


def test_bad_caps_and_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="from 1 to 64"):
        MachineSlots(tmp_path, {"claude": 0})
    with pytest.raises(ValueError, match="from 1 to 64"):
        RunSlots(concurrency=True)
    with pytest.raises(ValueError, match="not an agent name"):
        MachineSlots(tmp_path).try_acquire("../etc")


def test_run_slots_and_machine_slots_together_in_threads(tmp_path):
    run = RunSlots(concurrency=3, per_agent={"claude": 1})
    machine = MachineSlots(tmp_path, {"claude": 2, "codex": 2})
    lock = threading.Lock()
    running = {"claude": 0, "codex": 0, "total": 0}
    peaks = {"claude": 0, "codex": 0, "total": 0}

    def step(agent):
        with hold_slots(run, machine, agent, timeout_s=60):
            with lock:
                running[agent] += 1
                running["total"] += 1
                for key in (agent, "total"):
                    peaks[key] = max(peaks[key], running[key])
            time.sleep(0.05)
            with lock:
                running[agent] -= 1
                running["total"] -= 1

    threads = [threading.Thread(target=step, args=(a,)) for a in ["claude", "codex"] * 6]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peaks["claude"] == 1  # the run's per_agent
    assert peaks["codex"] <= 2  # the machine's cap
    assert peaks["total"] <= 3
    assert machine.held("claude") == 0 and machine.held("codex") == 0


def test_run_slots_wait_is_cancelled(tmp_path):
    run = RunSlots(concurrency=1)
    cancel = threading.Event()
    with run.hold("claude"):
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(SlotUnavailable, match="cancelled"):
            with run.hold("codex", cancel=cancel):
                pass
    with run.hold("codex"):  # the failed wait took nothing
        pass
