"""A gate's environment: the code it imports must be the tree it tests (the run's repository, or the
base checkout), whatever the user's environment has installed.

Python: the tree's import roots (src/ when present, then the top folder) go first on PYTHONPATH, and a
virtualenv that setup made inside the tree comes first on PATH. Before the gate, the gate's own
interpreter is asked where the project's own package resolves (importlib.util.find_spec: it finds,
it does not import, so a package that raises on import still checks). When it resolves elsewhere
(a legacy `setup.py develop` .pth puts the user's checkout before PYTHONPATH), a sitecustomize put
first on PYTHONPATH moves the roots to the front; when even that cannot make it resolve inside the
tree, the gate fails as misconfigured and never passes.

Node: a link in node_modules that points into the user's checkout would test that checkout; it fails
the gate as misconfigured the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.proc import run_command

# Folders that hold no package of the project's own.
_NOT_PACKAGES = frozenset(
    {"tests", "test", "docs", "doc", "examples", "benchmarks", "scripts", "build", "dist"}
)
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?$")
_SHIM_NAME = "sitecustomize.py"
# Moves the run's import roots to the very front of sys.path, after every .pth file had its say.
_SHIM = '''"""Written by ai-agents-orchestrator for its gates: the tested tree's code comes first."""
import os as _os
import sys as _sys

for _root in reversed([r for r in _os.environ.get("ORCHESTRATOR_GATE_ROOTS", "").split(_os.pathsep) if r]):
    while _root in _sys.path:
        _sys.path.remove(_root)
    _sys.path.insert(0, _root)
'''
# Asks the interpreter where each name resolves, without importing it. sys.path[0] ('' for -c) is
# dropped first: a console script such as pytest does not have the current folder there either.
_CHECK = (
    "import importlib.util, json, sys\n"
    "sys.path.pop(0)\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        spec = importlib.util.find_spec(name)\n"
    "    except Exception as exc:\n"
    "        out[name] = {'error': repr(exc)}\n"
    "        continue\n"
    "    if spec is None:\n"
    "        out[name] = {'origin': None, 'locations': []}\n"
    "    else:\n"
    "        out[name] = {'origin': spec.origin, 'locations': list(spec.submodule_search_locations or [])}\n"
    "print(json.dumps(out))\n"
)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def is_python_project(tree: Path) -> bool:
    return any((tree / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg")) or any(
        tree.glob("*.py")
    )


def import_roots(tree: Path) -> list[Path]:
    """Where the tree's own Python code is imported from: src/ (when present), then the top folder."""
    roots = []
    if (tree / "src").is_dir():
        roots.append(tree / "src")
    roots.append(tree)
    return roots


def _declared_names(tree: Path) -> list[str]:
    """Project and module names declared in pyproject.toml, setup.cfg or setup.py."""
    # Imported here: only a gate needs them (a run's first agent starts before its first gate, mostly).
    import configparser
    import tomllib

    names: list[str] = []
    try:
        pyproject = tomllib.loads(_read(tree / "pyproject.toml"))
    except tomllib.TOMLDecodeError:
        pyproject = {}
    tool = pyproject.get("tool", {})
    flit_module = tool.get("flit", {}).get("module", {}).get("name")
    if isinstance(flit_module, str):
        names.append(flit_module)
    project_name = pyproject.get("project", {}).get("name") or tool.get("poetry", {}).get("name")
    if isinstance(project_name, str):
        names.append(project_name)
    cfg = configparser.ConfigParser()
    try:
        cfg.read_string(_read(tree / "setup.cfg"))
        if cfg.has_option("metadata", "name"):
            names.append(cfg.get("metadata", "name"))
    except configparser.Error:
        pass
    match = re.search(r"""\bname\s*=\s*["']([A-Za-z0-9_.-]+)["']""", _read(tree / "setup.py"))
    if match:
        names.append(match.group(1))
    return [re.sub(r"[-.]+", "_", name).lower() for name in names]


def _exists_in(roots: Sequence[Path], name: str) -> bool:
    return any((root / name).is_dir() or (root / f"{name}.py").is_file() for root in roots)


def own_packages(tree: Path) -> list[str]:
    """The import names of the project's own packages that the tree really holds: the declared name
    when a root has it, else the packages directly under src/. Empty when none can be told."""
    roots = import_roots(tree)
    declared = [name for name in dict.fromkeys(_declared_names(tree)) if _exists_in(roots, name)]
    if declared:
        return declared[:1]
    src = tree / "src"
    if src.is_dir():
        found = sorted(
            p.name
            for p in src.iterdir()
            if p.is_dir() and (p / "__init__.py").is_file() and p.name not in _NOT_PACKAGES
        )
        return found[:3]
    return []


def python_path(roots: Sequence[Path], shim_dir: Path | None = None) -> str:
    entries = ([str(shim_dir)] if shim_dir is not None else []) + [str(root) for root in roots]
    return os.pathsep.join(entries)


def tree_venv(tree: Path) -> Path | None:
    """A virtualenv inside the tree (made by setup: uv sync, poetry with in-project venvs)."""
    venv = tree / ".venv"
    return venv if (venv / "bin" / "python").exists() else None


def gate_environment(tree: Path, base_path: str) -> dict[str, str]:
    """What a gate in `tree` gets on top of the allowlisted environment (without the shim)."""
    extra: dict[str, str] = {}
    venv = tree_venv(tree)
    path = base_path
    if venv is not None:
        path = os.pathsep.join([str(venv / "bin"), base_path])
        extra["VIRTUAL_ENV"] = str(venv)
    node_bin = tree / "node_modules" / ".bin"
    if node_bin.is_dir():
        path = os.pathsep.join([str(node_bin), path])
    extra["PATH"] = path
    if is_python_project(tree):
        roots = import_roots(tree)
        extra["PYTHONPATH"] = python_path(roots)
        extra["ORCHESTRATOR_GATE_ROOTS"] = os.pathsep.join(str(r) for r in roots)
    return extra


def gate_interpreter(argv: Sequence[str], path: str) -> str | None:
    """The Python interpreter that will run the gate, when its command reveals one: `python ...`,
    or a script whose #! line names Python (pytest, tox, nox, ...). None for anything else."""
    exe = argv[0]
    found = exe if "/" in exe else shutil.which(exe, path=path)
    if found is None:
        return None
    if _PYTHON_NAME.match(Path(exe).name):
        return found
    try:
        with open(found, "rb") as fh:
            first = fh.readline(512).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!") or "python" not in first:
        return None
    words = first[2:].split()
    if not words:
        return None
    if Path(words[0]).name == "env":
        rest = [w for w in words[1:] if not w.startswith("-")]
        return shutil.which(rest[0], path=path) if rest else None
    return words[0]


@dataclass(frozen=True)
class ImportCheck:
    """Where the project's own packages resolve for the gate's interpreter."""

    ok: bool
    shim: bool = False  # the sitecustomize shim was needed
    message: str = ""  # when not ok: what is wrong and what to do
    notes: list[str] = field(default_factory=list)


def _inside(path: str | None, tree: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(tree.resolve())
    except (OSError, ValueError):
        return False


def _resolves(interpreter: str, names: Sequence[str], tree: Path, env: Mapping[str, str]) -> dict[str, str]:
    """name -> where it resolves ('' when it does not) for the names that do NOT resolve inside `tree`."""
    result = run_command([interpreter, "-c", _CHECK, *names], tree, env=env, timeout_s=60)
    try:
        found = json.loads(result.stdout.strip().splitlines()[-1]) if result.ok else None
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        tail = (result.stderr or result.stdout).strip()[-300:]
        return dict.fromkeys(names, f"(the check could not run: {tail})")
    outside = {}
    for name in names:
        info = found.get(name) or {}
        where = info.get("origin") or next(iter(info.get("locations") or []), None)
        if not _inside(where, tree) and not any(_inside(loc, tree) for loc in info.get("locations") or []):
            outside[name] = str(where or info.get("error") or "")
    return outside


def check_python_imports(argv: Sequence[str], tree: Path, env: dict[str, str], shim_dir: Path) -> ImportCheck:
    """Make the project's own packages resolve inside `tree` for the gate's interpreter; `env` (the
    gate's complete environment) gets the shim on PYTHONPATH when that was what it took."""
    if "PYTHONPATH" not in env:
        return ImportCheck(ok=True)
    names = own_packages(tree)
    interpreter = gate_interpreter(argv, env.get("PATH", ""))
    if not names or interpreter is None:
        return ImportCheck(ok=True)
    outside = _resolves(interpreter, names, tree, env)
    if not outside:
        return ImportCheck(ok=True)
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / _SHIM_NAME).write_text(_SHIM, encoding="utf-8")
    shimmed = {**env, "PYTHONPATH": python_path(import_roots(tree), shim_dir)}
    still = _resolves(interpreter, names, tree, shimmed)
    if not still:
        env.update(shimmed)
        first = next(iter(outside))
        return ImportCheck(
            ok=True,
            shim=True,
            notes=[
                f"`{first}` resolved to {outside[first] or 'nowhere'} before PYTHONPATH; "
                "a sitecustomize put the run's import roots first"
            ],
        )
    name, where = next(iter(still.items()))
    found = f"from {where}" if where and not where.startswith("(") else (where or "nowhere")
    message = (
        f"misconfigured: the gate's Python ({interpreter}) finds the project's package `{name}` {found}, "
        f"not in the tree under test ({tree}), so the gate would test other code than the run's. "
        "What to do: uninstall the project from that environment (pip uninstall), or install it "
        "inside the run with a `setup:` step (e.g. a virtualenv in the repository), or run the gate "
        "through a tool that builds its own environment (tox, nox, uv run)"
    )
    return ImportCheck(ok=False, message=message)


def check_node_links(tree: Path, user_checkout: Path | None) -> ImportCheck:
    """node_modules entries that link into the user's checkout (npm link, a `file:` path to it)."""
    modules = tree / "node_modules"
    if user_checkout is None or not modules.is_dir():
        return ImportCheck(ok=True)
    entries = [p for p in modules.iterdir() if not p.name.startswith(".")]
    entries += [q for p in entries if p.name.startswith("@") and p.is_dir() for q in p.iterdir()]
    checkout = user_checkout.resolve()
    for entry in entries:
        if entry.is_symlink():
            target = entry.resolve()
            if target.is_relative_to(checkout) and not target.is_relative_to(tree.resolve()):
                return ImportCheck(
                    ok=False,
                    message=(
                        f"misconfigured: node_modules/{entry.relative_to(modules)} links to {target}, in "
                        "your checkout, so the gate would test that instead of the run's tree. What to "
                        "do: depend on it by version or through a workspace of the repository, not by "
                        "a path into your checkout (npm link, file:)"
                    ),
                )
    return ImportCheck(ok=True)
