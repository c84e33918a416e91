"""The interactive shell (`orchestrator shell`): command parsing, the live progress view, the session."""
