"""Workflows: the schema (workflow_steps.py, workflow_model.py), the files and the loader
(workflow_files.py), their problems (workflow_errors.py) and gate commands (gate_commands.py).

This module gathers the names the rest of the program uses, so that `orchestrator.engine.workflow`
stays the one place to import them from.
"""

from __future__ import annotations

from orchestrator.engine.gate_commands import (
    AUTO_GATE,
    detect_test_command,
    parse_gate_argv,
    resolve_gate_argv,
)
from orchestrator.engine.workflow_errors import Problem, WorkflowInvalid
from orchestrator.engine.workflow_files import (
    DISTRIBUTION,
    LEGACY_UNUSED_AGENT_KEYS,
    LEGACY_UNUSED_SETTINGS,
    FileWorkflow,
    LegacyAgent,
    LegacySettings,
    LoadedWorkflow,
    SingleWorkflowFile,
    WorkflowFile,
    WorkflowListing,
    WorkflowSource,
    builtin_dir,
    list_workflows,
    load_workflow,
    parse_workflow_data,
    read_workflow_file,
    repo_workflow_dir,
    validate_file,
)
from orchestrator.engine.workflow_model import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MIN_SUGGESTIONS_THRESHOLD,
    MAX_ITERATIONS_LIMIT,
    DiffBase,
    RunLimits,
    Workflow,
    apply_agent_overrides,
    parse_agent_overrides,
)
from orchestrator.engine.workflow_plan_steps import ForEachStep, MergeStep, PlanStep
from orchestrator.engine.workflow_steps import (
    DEFAULT_GATE_TIMEOUT_S,
    DEFAULT_SETUP_TIMEOUT_S,
    READ_ONLY_TASKS,
    TASKS,
    AttemptsStep,
    ConsensusStep,
    GateStep,
    SetupStep,
    Step,
    TaskKind,
    instance_names,
)
from orchestrator.engine.workflow_union import AnyStep, TaskStep

__all__ = [
    "AUTO_GATE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_GATE_TIMEOUT_S",
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_MIN_SUGGESTIONS_THRESHOLD",
    "DEFAULT_SETUP_TIMEOUT_S",
    "DISTRIBUTION",
    "LEGACY_UNUSED_AGENT_KEYS",
    "LEGACY_UNUSED_SETTINGS",
    "MAX_ITERATIONS_LIMIT",
    "READ_ONLY_TASKS",
    "TASKS",
    "AnyStep",
    "AttemptsStep",
    "ConsensusStep",
    "DiffBase",
    "FileWorkflow",
    "ForEachStep",
    "GateStep",
    "LegacyAgent",
    "LegacySettings",
    "LoadedWorkflow",
    "MergeStep",
    "PlanStep",
    "Problem",
    "RunLimits",
    "SetupStep",
    "SingleWorkflowFile",
    "Step",
    "TaskKind",
    "TaskStep",
    "Workflow",
    "WorkflowFile",
    "WorkflowInvalid",
    "WorkflowListing",
    "WorkflowSource",
    "apply_agent_overrides",
    "builtin_dir",
    "detect_test_command",
    "instance_names",
    "list_workflows",
    "load_workflow",
    "parse_agent_overrides",
    "parse_gate_argv",
    "parse_workflow_data",
    "read_workflow_file",
    "repo_workflow_dir",
    "resolve_gate_argv",
    "validate_file",
]
