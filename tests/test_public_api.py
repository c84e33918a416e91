import orchestrator


def test_public_api_is_pinned():
    # Change on purpose only: the names users may import from `orchestrator`.
    assert sorted(orchestrator.__all__) == sorted(["__version__"])
