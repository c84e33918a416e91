"""Configuration and workflow files are read within bounds, and parsed as yaml.safe_load would."""

from __future__ import annotations

import os

import pytest
import yaml

from orchestrator.errors import ConfigError
from orchestrator.files import load_yaml, read_config_text


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


def test_load_yaml_gives_what_safe_load_gives_and_its_errors():
    text = "a: yes\nb: 1.5e3\nc: 2026-12-06\nd: ~\ne: 017\nf: [1, {g: h}]\nlong: |\n  two\n  lines\n"
    assert load_yaml(text) == yaml.safe_load(text)
    for bad in ("agents: [unclosed", "x: !!python/object:os.system ls", "\t- x"):
        with pytest.raises(yaml.YAMLError) as ours:
            load_yaml(bad)
        with pytest.raises(yaml.YAMLError) as theirs:
            yaml.safe_load(bad)
        assert str(ours.value) == str(theirs.value)
