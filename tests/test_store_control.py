"""Control requests in the store: any process asks, exactly one takes (on both backends)."""

from __future__ import annotations

import os

import pytest

from orchestrator.errors import RunNotFound
from orchestrator.store import SCHEMA_VERSION, Store
from tests.store_helpers import make_run


def test_a_request_is_taken_once_and_finished(store_location):
    with Store(store_location) as asking, Store(store_location) as owner:
        assert asking.schema_version() == SCHEMA_VERSION >= 2
        make_run(asking)
        first = asking.request_control("r1", "cancel", {"source": "the dashboard"})
        second = asking.request_control("r1", "follow_up", {"text": "more"})
        assert [r.id for r in owner.pending_controls("r1")] == [first, second]
        assert [r.kind for r in owner.pending_controls("r1", kinds=("follow_up",))] == ["follow_up"]
        assert owner.take_control(first, os.getpid()) is True
        assert asking.take_control(first, 12345) is False  # another process was first
        owner.finish_control(first, "done", "stopped")
        taken = asking.control(first)
        assert taken is not None and taken.status == "done" and taken.taken_by == os.getpid()
        assert [r.id for r in owner.pending_controls()] == [second]


def test_a_request_for_an_unknown_run_is_refused(store_location):
    with Store(store_location) as store, pytest.raises(RunNotFound):
        store.request_control("nope", "cancel")
