"""What tests (ours and users') need to run the real coding CLIs with no account: the scripted model
server and its scenarios."""
