"""``lgmon_client`` stands alone: no Django, no server code, its own installable package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_sdk_loads_no_django_and_no_server_code() -> None:
    script = (
        "import sys, lgmon_client\n"
        "from lgmon_client import callback, decorators, definition, sender\n"
        "server = ('django', 'rest_framework', 'celery', 'monitoring', 'versioning',\n"
        "          'analytics', 'lgmon_site')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in server))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_builds_as_its_own_wheel_with_its_own_dependencies(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and egg-info/ next to the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "lgmon_client", source, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("lgmon_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith("METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert {
        "lgmon_client/__init__.py",
        "lgmon_client/callback.py",
        "lgmon_client/py.typed",
    } <= names
    assert not any(name.startswith(("monitoring/", "lgmon_site/")) for name in names)
    assert sorted(r.split(">")[0].split(";")[0].strip() for r in requires) == [
        "langchain-core",
        "langgraph",
        "requests",
    ]
    assert any("extra ==" in r and r.startswith("langgraph") for r in requires)
