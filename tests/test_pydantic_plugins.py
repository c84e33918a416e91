"""pydantic's plugin look-up without importlib.metadata (orchestrator/pydantic_plugins.py): nothing
imported for it when no plugin is installed, and an installed plugin still found and used. A fresh
interpreter each: this process has imported everything."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

from orchestrator.proc import child_env, run_command

PROBE = """
import json, sys
import orchestrator.config
from pydantic import BaseModel
class Probe(BaseModel):
    x: int
Probe(x=1)
seen = getattr(sys.modules.get("probe_plugin"), "SEEN", [])
print(json.dumps({"metadata": "importlib.metadata" in sys.modules, "seen": seen}))
"""

PLUGIN = """
SEEN = []
class _Plugin:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        SEEN.append(schema_type_path.name)
        return None, None, None
plugin = _Plugin()
"""


def _probe(tmp_path: Path, *extra_path: Path) -> dict[str, object]:
    root = Path(__file__).resolve().parents[1]
    pythonpath = os.pathsep.join(str(p) for p in (root, *extra_path))
    env = child_env(os.environ, {"PYTHONPATH": pythonpath, "ORCHESTRATOR_HOME": str(tmp_path / "home")})
    result = run_command([sys.executable, "-c", PROBE], tmp_path, env=env, timeout_s=60)
    assert result.ok, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _plugin_files() -> dict[str, str]:
    return {
        "probe_plugin.py": PLUGIN,
        "probe_plugin-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0.1\n",
        "probe_plugin-0.1.dist-info/entry_points.txt": "[console_scripts]\nx = y:z\n\n[pydantic]\nprobe = probe_plugin:plugin\n",
    }


def test_no_plugin_installed_means_no_importlib_metadata(tmp_path: Path):
    assert _probe(tmp_path) == {"metadata": False, "seen": []}


def test_an_installed_plugin_is_found_and_used(tmp_path: Path):
    site = tmp_path / "site"
    for name, text in _plugin_files().items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    assert _probe(tmp_path, site) == {"metadata": True, "seen": ["Probe"]}


def test_a_plugin_inside_a_zip_on_the_path_is_found_too(tmp_path: Path):
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in _plugin_files().items():
            zf.writestr(name, text)
    assert _probe(tmp_path, archive) == {"metadata": True, "seen": ["Probe"]}
