from __future__ import annotations

from orchestrator.workspace.diffs import split_file_diffs, truncate_diff


def section(path: str, lines: int, new: bool = False) -> str:
    head = f"diff --git a/{path} b/{path}\n"
    if new:
        head += "new file mode 100644\n--- /dev/null\n"
    else:
        head += f"index 1..2 100644\n--- a/{path}\n"
    head += f"+++ b/{path}\n@@ -0,0 +1,{lines} @@\n"
    return head + "".join(f"+line {i} of {path}\n" for i in range(lines))


def test_split_keeps_sections_whole_and_in_order():
    text = section("a.py", 3) + section("b.py", 2, new=True)
    assert split_file_diffs(text) == [section("a.py", 3), section("b.py", 2, new=True)]
    # A line inside a hunk that merely contains the header text is not a new section.
    tricky = section("c.py", 1).replace("+line 0 of c.py", "+x = 'diff --git a/b'")
    assert split_file_diffs(tricky) == [tricky]


def test_a_diff_within_budget_is_unchanged():
    text = section("a.py", 3)
    result = truncate_diff(text, ["a.py"], 10_000)
    assert result.text == text and not result.truncated and result.cut_files == []


def test_cut_keeps_whole_sections_then_a_shortened_one_and_names_the_rest():
    sections = [section("a.py", 20), section("big.py", 2000), section("c.py", 20), section("d.py", 20)]
    text = "".join(sections)
    files = ["a.py", "big.py", "c.py", "d.py"]
    result = truncate_diff(text, files, 3000)
    assert result.truncated
    assert len(result.text.encode()) <= 3000
    assert result.text.startswith(sections[0])
    assert "[... rest of the diff of big.py cut ...]" in result.text
    assert result.cut_files == ["big.py", "c.py", "d.py"]
    assert result.files == files
    assert result.text.rstrip().endswith("big.py c.py d.py]")


def test_many_cut_files_stay_within_budget():
    sections = [section(f"dir/file_{i:04d}.py", 30) for i in range(300)]
    result = truncate_diff("".join(sections), [], 4000)
    assert len(result.text.encode()) <= 4000
    assert result.text.rstrip().endswith("...]")
    assert len(result.cut_files) > 250


def test_budget_counts_bytes_not_characters():
    text = section("u.txt", 400).replace("line", "ligne é€")
    result = truncate_diff(text, ["u.txt"], 1500)
    assert len(result.text.encode("utf-8")) <= 1500
    result.text.encode("utf-8")  # no broken characters
