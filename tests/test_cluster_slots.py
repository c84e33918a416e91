"""Per-CLI slots across a cluster, on a real PostgreSQL: advisory locks held by a session each."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.limits.cluster_slots import ClusterSlots
from orchestrator.proc import child_env, run_command

TAKER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    from orchestrator.limits.cluster_slots import ClusterSlots
    url, home, threads, rounds, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    slots = ClusterSlots(url, home, {"claude": 3})
    samples, taken = [], []
    while not go.exists():
        time.sleep(0.005)
    def work():
        for _ in range(rounds):
            with slots.acquire("claude", timeout_s=60) as slot:
                taken.append(slot.index)
                samples.append(slots.held("claude"))
                time.sleep(0.01)
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool: t.start()
    for t in pool: t.join()
    print(json.dumps({"samples": samples, "taken": taken}))
    """
)


def env() -> dict[str, str]:
    extra = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return child_env(os.environ, extra)


def test_processes_with_threads_never_exceed_the_cap(postgres_url, tmp_path):
    processes, threads, rounds = 2, 4, 8
    go = tmp_path / "go"
    with ThreadPoolExecutor(max_workers=processes) as pool:
        futures = [
            pool.submit(
                run_command,
                [
                    sys.executable,
                    "-c",
                    TAKER,
                    postgres_url,
                    str(tmp_path / f"home-{p}"),
                    str(threads),
                    str(rounds),
                    str(go),
                ],
                tmp_path,
                env=env(),
                timeout_s=180,
            )
            for p in range(processes)
        ]
        time.sleep(0.5)
        go.write_text("")
        results = [f.result() for f in futures]
    assert [r.stderr[-800:] for r in results if not r.ok] == []
    outputs = [json.loads(r.stdout) for r in results]
    samples = [s for o in outputs for s in o["samples"]]
    assert len(samples) == processes * threads * rounds
    assert max(samples) <= 3 and min(samples) >= 1  # sampled while holding: never over the cap
    assert max(samples) >= 2  # they did overlap (the cap was what held them back)
    assert {i for o in outputs for i in o["taken"]} <= {0, 1, 2}
    assert ClusterSlots(postgres_url, tmp_path / "home-0", {"claude": 3}).held("claude") == 0


def test_the_cap_is_shared_and_a_released_slot_is_free_again(postgres_url, tmp_path):
    a = ClusterSlots(postgres_url, tmp_path / "a", {"codex": 2})
    b = ClusterSlots(postgres_url, tmp_path / "b", {"codex": 2})  # another machine's state home
    first, second = a.try_acquire("codex"), b.try_acquire("codex")
    assert first is not None and second is not None and {first.index, second.index} == {0, 1}
    assert a.try_acquire("codex") is None and b.try_acquire("codex") is None
    assert a.held("codex") == b.held("codex") == 2 and a.held("claude") == 0
    first.release()
    again = b.try_acquire("codex")
    assert again is not None and again.index == first.index and again.others_held == 1
    again.release()
    second.release()
    assert a.held("codex") == 0


def test_a_killed_holders_slot_is_freed(postgres_url, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(
        "import signal, sys, time\nfrom pathlib import Path\n"
        "from orchestrator.limits.cluster_slots import ClusterSlots\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # only SIGKILL ends it
        "slot = ClusterSlots(sys.argv[1], Path(sys.argv[2]), {'codex': 1}).acquire('codex')\n"
        "Path(sys.argv[3]).touch()\ntime.sleep(120)\n"
    )
    marker = tmp_path / "holding"
    slots = ClusterSlots(postgres_url, tmp_path / "here", {"codex": 1})
    result = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_command(
                [sys.executable, str(script), postgres_url, str(tmp_path / "there"), str(marker)],
                tmp_path,
                env=env(),
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
    assert result[0].timed_out  # run_command ended it with SIGKILL
    deadline = time.monotonic() + 10  # the server notices the closed socket at once, or nearly
    slot = slots.try_acquire("codex")
    while slot is None and time.monotonic() < deadline:
        time.sleep(0.05)
        slot = slots.try_acquire("codex")
    assert slot is not None and slots.held("codex") == 1
    slot.release()
    assert slots.held("codex") == 0


def test_a_postgresql_store_means_cluster_wide_slots_and_sqlite_machine_ones(postgres_url, tmp_path):
    from orchestrator.limits import MachineSlots
    from orchestrator.limits.cluster_slots import machine_slots_for
    from orchestrator.store import Store

    with Store(postgres_url) as shared, Store(tmp_path / "state.db") as local:
        assert shared.database_url == postgres_url and local.database_url is None
        cluster = machine_slots_for(shared.database_url, tmp_path, {"claude": 2})
        machine = machine_slots_for(local.database_url, tmp_path, {"claude": 2})
    assert isinstance(cluster, ClusterSlots) and cluster.configured_cap("claude") == 2
    assert type(machine) is MachineSlots
    with cluster.acquire("claude"):
        assert cluster.held("claude") == 1 and machine.held("claude") == 0  # different places
