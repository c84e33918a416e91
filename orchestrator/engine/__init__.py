"""The engine: workflow schema and loader (workflow.py), review parsing (review.py), prompt rendering
(prompts.py), stop rules (stop.py), and the runner that walks a workflow with them.

Each module is imported by name; this file re-exports nothing, so importing one piece stays cheap.
"""
