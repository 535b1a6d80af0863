#!/usr/bin/env python3
"""lgmon's two commands, with nothing but Python 3.11+ installed.

    python3 dev.py run    install, migrate, create an admin, start web + worker + beat
    python3 dev.py test   install and run the whole test suite (extra args go to pytest)
    python3 dev.py check  ruff (lint and format) and mypy

Everything is installed into ./.venv; it is reinstalled when pyproject.toml changes.
This file uses the standard library only, since it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".lgmon-installed"


def ensure_venv() -> None:
    """Create .venv and install lgmon with its dev extras, once per pyproject.toml version."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing lgmon and its dependencies into .venv ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def manage(*args: str) -> None:
    subprocess.run([str(PYTHON), str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def run() -> int:
    """Migrate, make sure an admin exists, then run web, worker and beat until Ctrl-C."""
    ensure_venv()
    manage("migrate", "--no-input")
    manage("collectstatic", "--no-input", "-v", "0")
    manage("ensure_admin")
    bind = os.environ.get("LGMON_BIND", "127.0.0.1:8000")
    processes = {
        "web": [str(BIN / "gunicorn"), "lgmon_site.wsgi", "--bind", bind, "--workers", "2"],
        "worker": [str(BIN / "celery"), "-A", "lgmon_site", "worker", "-l", "info", "-c", "2"],
        "beat": [str(BIN / "celery"), "-A", "lgmon_site", "beat", "-l", "info"],
    }
    children = {name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in processes.items()}
    print(f"\nlgmon is running: http://{bind}/admin/  (Ctrl-C stops web, worker and beat)\n")

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Set explicitly: a shell that starts this in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping the others")
                    exit_code = child.returncode or 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    return exit_code


def test(pytest_args: list[str]) -> int:
    ensure_venv()
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT).returncode


def check() -> int:
    ensure_venv()
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), "."],
    ]
    return max(subprocess.run(step, cwd=ROOT).returncode for step in steps)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before anything checks it
        print(f"lgmon needs Python 3.11 or newer, this is {sys.version.split()[0]}")
        return 2
    if not argv or argv[0] not in {"run", "test", "check"}:
        print(__doc__)
        return 2
    if argv[0] == "run":
        return run()
    if argv[0] == "check":
        return check()
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
