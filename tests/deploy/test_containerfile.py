"""deploy/Containerfile read as a build would read it: what it copies exists and is in the build
context, what it installs is a Debian package, and the final stage agrees with the settings it ships.
The real build (debootstrap base, buildah, `mkd --version` inside) is `make image`: minutes, not here."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mkd.config import load_settings

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "Containerfile"
IGNORE = REPO / ".containerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined and comments dropped; stages counted by FROM."""
    found: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), args.strip(), stage))
    assert not pending, "a continuation line ends the file"
    return found


PARSED = instructions(CONTAINERFILE.read_text())
FINAL = max(i.stage for i in PARSED)


def in_context(path: str) -> bool:
    """The .containerignore rules, last match wins: a pattern matches the path, a parent folder of it,
    or (`**/name`) any of its components."""
    included = True
    for rule in IGNORE.read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in path.split("/"))
        else:
            hit = fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/")
        if hit:
            included = negate
    return included


def final(keyword: str) -> list[str]:
    return [i.args for i in PARSED if i.stage == FINAL and i.keyword == keyword]


def test_the_base_is_debian_slim_with_the_python_mkd_needs() -> None:
    froms = [i.args for i in PARSED if i.keyword == "FROM"]
    (arg,) = [i.args for i in PARSED if i.keyword == "ARG" and i.args.startswith("BASE=")]
    assert arg == "BASE=docker.io/library/debian:bookworm-slim"
    assert froms == ["${BASE} AS build", "${BASE}"]
    # bookworm's python3 is 3.11, what pyproject.toml asks for.
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    copies = [i for i in PARSED if i.keyword == "COPY" and not i.args.startswith("--from")]
    assert copies
    for copy in copies:
        *sources, _destination = shlex.split(copy.args)
        for source in sources:
            assert (REPO / source).exists(), source
            assert in_context(source.rstrip("/")), f"{source} is excluded by .containerignore"
    for needed in ("mkd/cli/main.py", "mkd/db/migrations/env.py", "mkd/web/static"):
        assert in_context(needed), needed
    for left_out in (".venv/bin/python", "var/mkd.sqlite3", "tests/conftest.py", ".git/HEAD",
                     "mkd/cli/__pycache__/main.cpython-311.pyc"):
        assert not in_context(left_out), left_out


def test_the_packages_it_installs_are_debian_packages() -> None:
    runs = " ".join(i.args for i in PARSED if i.keyword == "RUN")
    packages = set()
    for command in re.findall(r"apt-get install ([^&]+)", runs):
        packages |= {word for word in command.split() if not word.startswith("-")}
    assert {"python3", "device-tree-compiler", "swig", "python3-venv"} <= packages
    apt = shutil.which("apt-cache")
    assert apt, "apt-cache: the tests run on Debian"
    shown = subprocess.run([apt, "show", "--no-all-versions", *sorted(packages)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert set(re.findall(r"^Package: (\S+)$", shown.stdout, re.M)) == packages


def test_the_final_stage_runs_mkd_unprivileged_with_its_settings() -> None:
    (user,) = final("USER")
    assert user == "10001:10001"
    run = " ".join(final("RUN"))
    assert "groupadd --system --gid 10001 mkd" in run and "useradd --system --uid 10001 --gid 10001" in run
    assert "install -d -o mkd -g mkd -m 0750 /var/lib/mkd /run/mkd" in run
    (entrypoint,) = final("ENTRYPOINT")
    (cmd,) = final("CMD")
    assert eval_json(entrypoint) == ["/opt/mkd/bin/mkd"]
    config_path = eval_json(cmd)[eval_json(cmd).index("--config") + 1]
    copied = {shlex.split(args)[-1]: shlex.split(args)[0] for args in final("COPY") if not args.startswith("--from")}
    settings = load_settings(REPO / copied[config_path], env={})
    assert settings.daemon.backend == "simulated"
    assert str(settings.daemon.state_dir) == "/var/lib/mkd" and str(settings.unix_socket_path) == "/run/mkd/mkd.sock"
    assert final("VOLUME") == ['["/var/lib/mkd"]']
    assert final("EXPOSE") == [settings.daemon.listen.rsplit(":", 1)[1]]
    # The venv the build stage makes is what the final stage copies and runs.
    build_runs = " ".join(i.args for i in PARSED if i.stage == 0 and i.keyword == "RUN")
    assert "python3 -m venv /opt/mkd" in build_runs and "/opt/mkd/bin/mkd --version" in build_runs
    assert "--from=build /opt/mkd /opt/mkd" in final("COPY")


def eval_json(text: str) -> list[str]:
    value: list[str] = json.loads(text)
    return value


def test_the_build_script_is_sound_shell() -> None:
    script = REPO / "deploy" / "build-image.sh"
    assert script.stat().st_mode & 0o111
    checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    text = script.read_text()
    assert "-f deploy/Containerfile" in text and "mkd --version" in text
