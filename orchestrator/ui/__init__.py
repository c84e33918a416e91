"""The web dashboard: a Flask app factory (app.py), its JSON API (api.py) and pages (pages.py), the
Socket.IO bridge that follows the store's event log (bridge.py, follower.py), dashboard actions through
the run service and the store (actions.py), and the checks that keep it local and authenticated
(security.py). Nothing here runs at import time; `orchestrator serve` builds the app."""
