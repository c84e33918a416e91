"""Fixtures of the fault suite: a project with a stand-in CLI (see orchestrator.testing.standins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.testing.standins import FaultProject, end_recorded, fault_project


@pytest.fixture
def project(tmp_path: Path) -> FaultProject:
    return fault_project(tmp_path)


@pytest.fixture
def reap_recorded(project: FaultProject):
    """Whatever the test shows, end what the stand-in started afterwards, so one failure does not leave
    300-second sleepers behind for the rest of the suite."""
    yield
    end_recorded(project)
