"""An installed (non-editable) mkd carries its migrations: deploy/mkd.service runs such a copy."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_UPGRADE_FROM_THE_WHEEL = """
import sqlite3, sys
from pathlib import Path
import mkd
from mkd.db.migrate import upgrade_to_head
assert Path(mkd.__file__).is_relative_to(sys.argv[1]), mkd.__file__
upgrade_to_head(Path(sys.argv[2]))
names = {row[0] for row in sqlite3.connect(sys.argv[2]).execute("select name from sqlite_master")}
print(" ".join(sorted(names)))
"""


def test_the_wheel_ships_the_migrations_and_they_run_from_it(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, timeout=120,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mkd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {"mkd/db/migrations/env.py", "mkd/db/migrations/script.py.mako",
            "mkd/db/migrations/versions/0001_initial_schema.py"} <= names
    # The dashboard's page, stylesheet and every ES module it imports (mkd/web/, any subfolder).
    web = {path.relative_to(REPO).as_posix() for path in (REPO / "mkd" / "web").rglob("*") if path.is_file()}
    assert "mkd/web/static/cpumap.js" in web and web <= names, sorted(web - names)
    # The unpacked wheel first on the path (dependencies from this venv), run from elsewhere.
    done = subprocess.run([sys.executable, "-c", _UPGRADE_FROM_THE_WHEEL, str(tmp_path / "site"),
                           str(tmp_path / "db.sqlite3")], cwd=tmp_path, check=True, timeout=60,
                          capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path / "site"),
                                                                "PATH": "/usr/bin:/bin"})
    tables = done.stdout.split()
    assert {"alembic_version", "instance", "image", "pool"} <= set(tables), tables
