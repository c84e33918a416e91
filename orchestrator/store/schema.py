"""The schema, versioned with `PRAGMA user_version` and migrated forward on open."""

from __future__ import annotations

# One tuple of statements per schema version; never edit a released one, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            repo TEXT NOT NULL,
            task TEXT NOT NULL,
            workflow_name TEXT NOT NULL,
            workflow_json TEXT NOT NULL,
            base TEXT NOT NULL,
            base_sha TEXT,
            branch TEXT NOT NULL,
            worktree TEXT,
            status TEXT NOT NULL,
            stop_reason TEXT,
            iterations INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            owner_pid INTEGER,
            owner_token TEXT,
            options_json TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX runs_by_repo ON runs (repo, created_at)",
        "CREATE INDEX runs_by_status ON runs (status)",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            agent TEXT NOT NULL,
            task TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            commit_sha TEXT,
            files_changed_json TEXT NOT NULL DEFAULT '[]',
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            prior_input_tokens INTEGER NOT NULL DEFAULT 0,
            prior_output_tokens INTEGER NOT NULL DEFAULT 0,
            prior_cached_tokens INTEGER NOT NULL DEFAULT 0,
            prior_cost_usd REAL,
            error_kind TEXT,
            error_message TEXT,
            session_id TEXT,
            started_at REAL,
            finished_at REAL,
            detail_json TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, step_id)
        )""",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            step_id TEXT,
            type TEXT NOT NULL,
            ts REAL NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
    ),
    # 2: control requests (cancel, follow-up) from any process, for the run's owner to pick up.
    (
        """CREATE TABLE control_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            payload_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            taken_by INTEGER,
            message TEXT
        )""",
        "CREATE INDEX control_requests_pending ON control_requests (status, run_id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

RUN_COLUMNS = (
    "id, repo, task, workflow_name, workflow_json, base, base_sha, branch, worktree, status, stop_reason,"
    " iterations, created_at, updated_at, finished_at, owner_pid, owner_token, options_json"
)
STEP_COLUMNS = (
    "run_id, step_id, iteration, idx, agent, task, status, attempts, commit_sha, files_changed_json,"
    " input_tokens, output_tokens, cached_tokens, cost_usd, prior_input_tokens, prior_output_tokens,"
    " prior_cached_tokens, prior_cost_usd, error_kind, error_message, session_id, started_at,"
    " finished_at, detail_json"
)
