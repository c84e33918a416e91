"""A step's transcript is capped on disk, with a marker where it was cut."""

from __future__ import annotations

import json

from orchestrator.adapters.transcript import Transcript


def test_both_files_share_one_cap_and_each_gets_the_marker(tmp_path):
    path = tmp_path / "t.jsonl"
    t = Transcript(path, max_bytes=100)
    for i in range(10):
        t.write("stdout", f'{{"n": {i}}}')
        t.write("stderr", f"err {i}")
    t.close()
    out, err = path.read_text().splitlines(), (tmp_path / "t.jsonl.stderr").read_text().splitlines()
    marker = json.loads(out[-1])
    assert (
        marker["type"] == "orchestrator.transcript_cut"
        and "transcript_max_bytes (100 bytes)" in marker["note"]
    )
    assert err[-1].startswith("[orchestrator] transcript cut")
    kept = sum(len(line) + 1 for line in out[:-1] + err[:-1])
    assert kept <= 100 and out[0] == '{"n": 0}' and err[0] == "err 0"
    assert t.dropped > 0


def test_under_the_cap_nothing_is_marked(tmp_path):
    t = Transcript(tmp_path / "t.jsonl", max_bytes=1000)
    t.write("stdout", "one")
    t.close()
    assert (tmp_path / "t.jsonl").read_text() == "one\n" and not t.cut
