"""The schema: one list of migrations for both backends, applied forward on open (db.py `_migrate`).

Each migration is a tuple of statements written once, in SQLite's dialect where the schema began; the
PostgreSQL backend rewrites their types (postgres_backend.ddl_for_postgres). The version reached is
kept where each backend keeps it: `PRAGMA user_version` in an SQLite file (so every existing state.db
opens as before, and its version is the number of migrations it has had), a one-row table
`orchestrator_schema` in PostgreSQL. Migrations run in one transaction with the version update, under
the backend's set-up lock, so concurrent first opens migrate once.

Why not Alembic: it needs SQLAlchemy at run time, and the default store must stay embedded with no
new mandatory dependency, so Alembic could only ever migrate the PostgreSQL store: two mechanisms, where
one list serves both. Its autogeneration needs SQLAlchemy models, which this store (hand-written SQL in
the common subset of both dialects) does not have; and its version table would have to be taught about
the `user_version` of existing SQLite files anyway. For a handful of tables that only ever grow, an ordered
list and a version number is the whole of what is needed. Revisit if migrations ever need to go down
or branch.
"""

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
    # 3: the run's fencing token (fences.py): the newest attempt at its step; 0 while none took one.
    ("ALTER TABLE runs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0",),
    # 4: the hour/day budget ledger's rows, for a store shared by a cluster (limits/cluster_ledger.py;
    # on one machine the ledger keeps its own file, limits/ledger.py). The same columns as there.
    (
        """CREATE TABLE budget_spend (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            run_id TEXT NOT NULL,
            usd REAL NOT NULL,
            reservation TEXT,
            label TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX budget_spend_at ON budget_spend (at)",
        "CREATE INDEX budget_spend_reservation ON budget_spend (reservation)",
        """CREATE TABLE budget_reservation (
            id TEXT PRIMARY KEY,
            at REAL NOT NULL,
            run_id TEXT NOT NULL,
            usd REAL NOT NULL,
            expires_at REAL NOT NULL,
            released_at REAL,
            label TEXT NOT NULL DEFAULT ''
        )""",
    ),
    # 5: a run's events of some types without reading its whole log: every engine start (a resume, each
    # step of a cluster run on its worker) looks up the run's follow-ups (engine/follow_ups.py).
    ("CREATE INDEX events_by_type ON events (run_id, type, seq)",),
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
