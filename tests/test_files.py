"""Configuration and workflow files are read within bounds."""

from __future__ import annotations

import os

import pytest

from orchestrator.errors import ConfigError
from orchestrator.files import read_config_text


def test_a_small_file_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("workflow: default\n")
    assert read_config_text(path, what="configuration file") == "workflow: default\n"


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: "/dev/zero", "not a regular file (it is a device, pipe or socket)"),
        (lambda p: (os.mkfifo(p / "f"), p / "f")[1], "not a regular file (it is a device, pipe or socket)"),
        (lambda p: p, "not a regular file (it is a folder)"),
        (lambda p: ((p / "big").write_bytes(b"#" * (1024 * 1024 + 1)), p / "big")[1], "larger than 1024 KiB"),
        (lambda p: p / "missing", "cannot read the configuration file (No such file or directory)"),
    ],
    ids=["device", "fifo", "folder", "over-1mb", "missing"],
)
def test_what_is_not_a_small_regular_file_is_refused_naming_it(tmp_path, make, said):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        read_config_text(path, what="configuration file")
    assert said in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 2
