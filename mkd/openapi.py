"""Print the app's OpenAPI document (`make openapi` writes it to openapi.json)."""

from __future__ import annotations

import json
import sys

from mkd.app import create_app


def render() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
