"""A gate's environment: import roots, the project's own package, the gate's interpreter, and the check
that the package resolves inside the tree under test (on real virtualenvs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from orchestrator.engine.gate_env import (
    check_node_links,
    check_python_imports,
    gate_environment,
    gate_interpreter,
    import_roots,
    own_packages,
)
from orchestrator.proc import child_env, run_command


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_roots_and_own_packages(tmp_path):
    src = write(
        tmp_path / "a", {"pyproject.toml": '[project]\nname = "My-Calc"\n', "src/my_calc/__init__.py": ""}
    )
    assert import_roots(src) == [src / "src", src] and own_packages(src) == ["my_calc"]
    flit = write(
        tmp_path / "b",
        {"pyproject.toml": '[project]\nname = "x"\n[tool.flit.module]\nname = "y"\n', "y.py": ""},
    )
    assert own_packages(flit) == ["y"]
    cfg = write(tmp_path / "c", {"setup.cfg": "[metadata]\nname = flat.pkg\n", "flat_pkg/__init__.py": ""})
    assert import_roots(cfg) == [cfg] and own_packages(cfg) == ["flat_pkg"]
    undeclared = write(
        tmp_path / "d", {"setup.py": "", "src/one/__init__.py": "", "src/tests/__init__.py": ""}
    )
    assert own_packages(undeclared) == ["one"]
    assert own_packages(write(tmp_path / "e", {"pyproject.toml": '[project]\nname = "gone"\n'})) == []


def test_gate_environment_puts_the_tree_first(tmp_path):
    tree = write(
        tmp_path / "t",
        {"pyproject.toml": "", "src/p/__init__.py": "", ".venv/bin/python": "", "node_modules/.bin/x": ""},
    )
    env = gate_environment(tree, "/usr/bin")
    assert env["PYTHONPATH"] == f"{tree / 'src'}{os.pathsep}{tree}"
    assert env["PATH"].split(os.pathsep) == [
        str(tree / "node_modules/.bin"),
        str(tree / ".venv/bin"),
        "/usr/bin",
    ]
    assert env["VIRTUAL_ENV"] == str(tree / ".venv")
    assert "PYTHONPATH" not in gate_environment(write(tmp_path / "n", {"package.json": "{}"}), "/usr/bin")


def test_gate_interpreter_reads_the_command_and_its_shebang(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, first in {
        "pytest": f"#!{sys.executable}",
        "tox": "#!/usr/bin/env python3",
        "npm": "#!/usr/bin/env node",
    }.items():
        (bin_dir / name).write_text(first + "\n")
        (bin_dir / name).chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    assert gate_interpreter(["pytest", "-q"], path) == sys.executable
    assert gate_interpreter(["tox"], path) and Path(gate_interpreter(["tox"], path) or "").name == "python3"
    assert gate_interpreter(["npm", "test"], path) is None
    assert gate_interpreter([sys.executable, "-m", "pytest"], path) == sys.executable
    assert gate_interpreter(["no-such-tool"], path) is None


def legacy_venv(tmp_path: Path, checkout: Path) -> Path:
    """A virtualenv with a legacy `setup.py develop` install: its .pth puts the user's checkout at the
    very front of sys.path, ahead of PYTHONPATH."""
    venv = tmp_path / "venv"
    run_command(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        tmp_path,
        env=child_env(os.environ),
        check=True,
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "easy-install.pth").write_text(f"import sys; sys.path.insert(0, {str(checkout / 'src')!r})\n")
    return venv


def test_a_front_inserting_pth_is_beaten_by_the_shim(tmp_path):
    files = {
        "pyproject.toml": '[project]\nname = "calc"\n',
        "src/calc/__init__.py": "raise RuntimeError('x')\n",
    }
    checkout = write(tmp_path / "user", files)
    tree = write(tmp_path / "run", files)
    venv = legacy_venv(tmp_path, checkout)
    env = child_env(os.environ, gate_environment(tree, os.environ["PATH"]))
    argv = [str(venv / "bin" / "python"), "-m", "pytest"]
    check = check_python_imports(argv, tree, env, tmp_path / "shim")
    assert check.ok and check.shim
    assert str(checkout / "src" / "calc") in check.notes[0]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "shim")
    where = run_command(
        [*argv[:1], "-c", "import importlib.util; print(importlib.util.find_spec('calc').origin)"],
        tree,
        env=env,
        check=True,
    )
    assert where.stdout.strip() == str(tree / "src" / "calc" / "__init__.py")


def test_without_a_shim_the_same_venv_would_test_the_users_checkout(tmp_path):
    # The failure the shim prevents, shown for real: PYTHONPATH alone loses to that .pth.
    files = {"pyproject.toml": '[project]\nname = "calc"\n', "src/calc/__init__.py": ""}
    checkout = write(tmp_path / "user", files)
    tree = write(tmp_path / "run", files)
    venv = legacy_venv(tmp_path, checkout)
    env = child_env(os.environ, gate_environment(tree, os.environ["PATH"]))
    where = run_command(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util; print(importlib.util.find_spec('calc').origin)",
        ],
        tmp_path,
        env=env,
        check=True,
    )
    assert where.stdout.strip().startswith(str(checkout))


def test_a_node_module_linking_into_the_users_checkout_is_misconfigured(tmp_path):
    checkout = write(tmp_path / "user", {"package.json": "{}"})
    tree = write(tmp_path / "run", {"package.json": "{}", "packages/own/index.js": ""})
    (tree / "node_modules").mkdir()
    (tree / "node_modules" / "inside").symlink_to(tree / "packages" / "own")
    assert check_node_links(tree, checkout).ok
    (tree / "node_modules" / "@scope").mkdir()
    (tree / "node_modules" / "@scope" / "self").symlink_to(checkout)
    check = check_node_links(tree, checkout)
    assert (
        not check.ok
        and "node_modules/@scope/self links to" in check.message
        and "What to do" in check.message
    )
