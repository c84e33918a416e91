"""A worker's sweep of finished runs' repositories: <worker state home>/repos/<run-id>/ is a full
checkout of the run, made by the run's first step on this worker, and nothing else on the cluster can
reach this disk to remove it (`runs discard` runs on the submitting machine).

Removing one loses nothing. The run branch and the run's record were pushed to the repository's URL
after every step (mirror.py), and any uncommitted work left in the folder is kept under a backup ref
first (RunWorkspace.remove_worktree, as `runs discard` and the dashboard do it), in the worker's
mirror; the run's next push takes it to the URL with the run's other backup refs. Before that, what
holds a secret given to an agent is withheld like a step's change (engine/leaks.py: kept only in the
run folder, never in a ref), so no backup can carry it off this machine. A later step, a resume or a follow-up of the run on this worker makes the repository
again from the mirror (open_run_workspace makes it when absent).

Which repositories go is `removable_runs`' answer (a pure function): those of runs the shared store
says finished at least `cluster.keep_finished_runs_s` ago, that are cluster runs, and that no step of
this worker is executing. Never removed: a running run's, a run the store does not know (this state
home may be a user's too, holding their local runs), a local run's. A group member's repository
(<run-id>-<member>, for best-of-N attempts and subtasks) goes with its run.

The run folders (<state home>/runs/<run-id>/: the agents' logs, capped transcripts, report files) stay:
they are small (transcripts are capped), they are what someone debugging a step on this machine
looks at, and they hold nothing that a later step needs from this disk only.

`RunsInUse` is what keeps a sweep and a step of the same run apart: a step waits while its run's
repository is being removed (then makes it again), and a sweep skips a run whose step is executing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError, RunNotFound
from orchestrator.store import Store
from orchestrator.store.owners import CLUSTER_OWNER
from orchestrator.workspace.paths import run_paths, validate_run_id
from orchestrator.workspace.run_workspace import RunWorkspace

log = structlog.get_logger(__name__)

SWEEP_EVERY_S = 300.0  # the worker's sweep: at start, then this often

StoredState = Literal["finished", "running", "absent", "local"]


@dataclass(frozen=True)
class StoredRun:
    """What the shared store says of a run: finished (and when), running, no such run ("absent"), or
    a run that is not the cluster's ("local": its repository is not this worker's to remove)."""

    state: StoredState
    finished_at: float | None = None
    url: str | None = None  # where the workers fetch its repository from (finished or running runs)


def owner_run(folder: str, stored: Mapping[str, StoredRun]) -> str | None:
    """The run a repos/ folder belongs to: the run of that id, else the longest run id it starts with
    (a group member's folder is <run-id>-<member>); None when the store knows neither."""
    if stored.get(folder, StoredRun("absent")).state != "absent":
        return folder
    parts = folder.split("-")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = "-".join(parts[:cut])
        if stored.get(prefix, StoredRun("absent")).state != "absent":
            return prefix
    return None


def candidate_ids(folder: str) -> list[str]:
    """The run ids the store is asked about for a folder: its own name, then its prefixes."""
    parts = folder.split("-")
    return [folder, *("-".join(parts[:cut]) for cut in range(len(parts) - 1, 0, -1))]


def removable_runs(
    folders: Iterable[str],
    stored: Mapping[str, StoredRun],
    *,
    executing: Collection[str],
    now: float,
    keep_s: float,
) -> list[str]:
    """The repos/ folders that may go (sorted): their run (`owner_run`) is a cluster run that finished
    at least `keep_s` seconds before `now`, and no step of this worker is executing it."""
    gone = []
    for folder in folders:
        owner = owner_run(folder, stored)
        if owner is None or owner in executing:
            continue
        run = stored[owner]
        if run.state == "finished" and run.finished_at is not None and now - run.finished_at >= keep_s:
            gone.append(folder)
    return sorted(gone)


class RunsInUse:
    """The runs this worker's steps are executing and the ones its sweep is removing, kept apart."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._stepping: Counter[str] = Counter()
        self._sweeping: set[str] = set()

    def executing(self) -> frozenset[str]:
        with self._changed:
            return frozenset(self._stepping)

    @contextlib.contextmanager
    def step(self, run_id: str) -> Iterator[None]:
        """Held while a step of the run executes; waits while the sweep removes its repository."""
        with self._changed:
            while run_id in self._sweeping:
                self._changed.wait()
            self._stepping[run_id] += 1
        try:
            yield
        finally:
            with self._changed:
                self._stepping[run_id] -= 1
                if self._stepping[run_id] <= 0:
                    del self._stepping[run_id]

    @contextlib.contextmanager
    def sweeping(self, run_id: str) -> Iterator[bool]:
        """True (and steps of the run wait) unless a step of the run is executing: then False."""
        with self._changed:
            if run_id in self._stepping:
                free = False
            else:
                free = True
                self._sweeping.add(run_id)
        try:
            yield free
        finally:
            if free:
                with self._changed:
                    self._sweeping.discard(run_id)
                    self._changed.notify_all()


@dataclass(frozen=True)
class Removed:
    run_id: str  # the folder's name: a run id, or a group member's
    freed_bytes: int
    kept: str | None  # the backup ref holding uncommitted work found there, if any


def stored_run(store: Store, run_id: str) -> StoredRun:
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        return StoredRun("absent")
    if run.owner_token != CLUSTER_OWNER:
        return StoredRun("local")
    from orchestrator.cluster.activities import repo_url

    url = repo_url(run.options, run.repo)
    if not run.finished:
        return StoredRun("running", url=url)
    return StoredRun("finished", finished_at=run.finished_at or run.updated_at, url=url)


def run_folders(state_home: Path) -> list[str]:
    """The names under <state home>/repos/ that are run ids (anything else is not a run's)."""
    repos = Path(state_home) / "repos"
    try:
        names = [entry.name for entry in os.scandir(repos) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    valid = []
    for name in names:
        with contextlib.suppress(OrchestratorError):
            valid.append(validate_run_id(name))
    return sorted(valid)


def sweep_run_repos(
    lookup: Callable[[str], StoredRun],
    *,
    state_home: Path,
    env: Mapping[str, str],
    in_use: RunsInUse,
    keep_s: float,
    now: float | None = None,
    stop: threading.Event | None = None,
    given: Mapping[str, str] | None = None,
) -> list[Removed]:
    """Removes the repositories `removable_runs` names (`lookup`: what the store says of a run id,
    `stored_run`), each as the workspace removes one; logs each (and what it freed) and returns them.
    A folder that cannot be removed (its run unknown to this worker's mirror, its repository
    tampered with) is logged and left. `stop` set (the worker shuts down): the sweep ends after the
    folder it is removing."""
    from orchestrator.cluster.mirror import MIRRORS, RepoMirror, mirror_key
    from orchestrator.engine.leaks import check_step

    folders = run_folders(state_home)
    stored: dict[str, StoredRun] = {}
    for folder in folders:
        for run_id in candidate_ids(folder):
            if run_id not in stored:
                stored[run_id] = lookup(run_id)
            if stored[run_id].state != "absent":
                break
    moment = time.time() if now is None else now
    gone = removable_runs(folders, stored, executing=in_use.executing(), now=moment, keep_s=keep_s)
    removed = []
    for folder in gone:
        if stop is not None and stop.is_set():
            break
        owner = owner_run(folder, stored)
        assert owner is not None
        url = stored[owner].url
        with in_use.sweeping(owner) as free:
            if not free or url is None:
                continue
            if not (Path(state_home) / MIRRORS / f"{mirror_key(url)}.git" / "HEAD").is_file():
                log.warning(
                    "run repository left: this worker has no mirror of its URL", run_id=folder, url=url
                )
                continue
            folder_path = run_paths(state_home, folder).worktree
            size = disk_usage(folder_path)
            try:
                mirror = RepoMirror.for_url(url, state_home=state_home, env=env)
                workspace = RunWorkspace.open(mirror.path, folder, state_home, environ=env)
                withheld = check_step(
                    workspace,
                    step_id="swept",
                    step_start=workspace.head(),
                    given=given or {},
                    run_dir=run_paths(state_home, folder).run_dir,
                )
                if withheld is not None:
                    log.warning(
                        "a swept repository held a secret: withheld",
                        run_id=folder,
                        folder=str(withheld.folder),
                    )
                kept = workspace.remove_worktree()
            except OrchestratorError as exc:
                log.warning("run repository left: could not remove it", run_id=folder, error=exc.message)
                continue
            log.info("removed a finished run's repository", run_id=folder, freed_bytes=size, kept=kept)
            removed.append(Removed(folder, size, kept))
    if removed:
        log.info(
            "swept run repositories", removed=len(removed), freed_bytes=sum(r.freed_bytes for r in removed)
        )
    return removed


def disk_usage(path: Path) -> int:
    """Bytes a folder takes on disk (each file once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def sweep_worker(
    settings: Settings, env: Mapping[str, str], in_use: RunsInUse, stop: threading.Event
) -> list[Removed]:
    """One sweep of this worker's state home against the shared store (blocking: run it in a thread)."""
    from orchestrator.config import agent_environments
    from orchestrator.secrets import SecretMasker
    from orchestrator.store import store_location
    from orchestrator.workspace.paths import state_home

    home = state_home(env)
    masker = SecretMasker.from_environments(env, agent_environments(settings, env))
    with Store(store_location(settings.cluster.database, env, home)) as store:
        return sweep_run_repos(
            functools.partial(stored_run, store),
            state_home=home,
            env=env,
            in_use=in_use,
            keep_s=settings.cluster.keep_finished_runs_s,
            stop=stop,
            given=masker.given,
        )
