"""Lines out of bytes, cut while they are read (pure)."""

from __future__ import annotations

from orchestrator.proc_output import CUT_MARK, LineSplitter


def test_lines_across_chunks():
    s = LineSplitter()
    assert s.feed(b"a\nb") == [b"a"]
    assert s.feed(b"c\n\nd") == [b"bc", b""]
    assert s.flush() == b"d"
    assert s.flush() is None


def test_a_long_line_keeps_its_head_and_a_mark_and_memory_stays_at_the_cap():
    s = LineSplitter(cap=10)
    for _ in range(1000):
        assert s.feed(b"x" * 1000) == []
        assert len(s.buffer) <= 10
    assert s.feed(b"tail\nnext\n") == [b"x" * 10 + CUT_MARK, b"next"]


def test_a_line_of_exactly_the_cap_is_not_cut():
    s = LineSplitter(cap=4)
    assert s.feed(b"abcd\nabcde\n") == [b"abcd", b"abcd" + CUT_MARK]


def test_partial_is_the_end_of_the_pending_line():
    s = LineSplitter()
    s.feed(b"done\nDo you trust this folder? (y/n) ")
    assert s.partial(12) == b"folder? (y/n) "[-12:]
