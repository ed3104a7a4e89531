"""Instance names and refs: the one name rule (DESIGN "Ids and refs")."""

from __future__ import annotations

import errno
import re

from mkd.errors import KernelError

MAX_NAME_LENGTH = 31
# DT node name characters (spec 5.3: names are node names); the schema's pattern, for OpenAPI.
NAME_PATTERN = rf"^[A-Za-z0-9,._+-]{{1,{MAX_NAME_LENGTH}}}$"
# A numeric ref: an id, whatever its range; a name never matches it.
NUMERIC_REF_PATTERN = r"^[+-]?[0-9]+$"

_NAME = re.compile(NAME_PATTERN)
_NUMERIC_REF = re.compile(NUMERIC_REF_PATTERN)
# Names become sysfs directory names (/sys/fs/multikernel/instances/<name>), where these two
# already mean something.
_PATH_NAMES = frozenset({".", ".."})


def is_numeric_ref(ref: str) -> bool:
    return _NUMERIC_REF.fullmatch(ref) is not None


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an instance, or None when it can."""
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        return f"name {name!r} must be 1-{MAX_NAME_LENGTH} characters"
    if _NAME.fullmatch(name) is None:
        bad = next(char for char in name if _NAME.fullmatch(char) is None)
        return f"name {name!r} has {bad!r}; allowed are letters, digits and , . _ + -"
    if is_numeric_ref(name):
        return f"name {name!r} is numeric, which would read as an id"
    if name in _PATH_NAMES:
        return f"name {name!r} cannot be a sysfs directory name"
    return None


def check_name(name: str) -> None:
    """Refuse a name that is not a DT node name, with EINVAL."""
    problem = name_problem(name)
    if problem is not None:
        raise KernelError(errno.EINVAL, problem)
