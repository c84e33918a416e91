"""Several machines: runs as durable Temporal workflows on a pool of workers, state in PostgreSQL.

The single-machine mode stays the default and embedded (SQLite, no server); everything here needs the
`[cluster]` extra and is imported only by the commands that use it (`worker`, `run --cluster`).
"""
