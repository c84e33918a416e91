from orchestrator.cli.entry import entry

entry()
