"""Reading a JSON request body, with its nesting depth bounded (issue #9, item 2).

Python's `json` recurses once per nesting level: a body of 50,000 `[` ends in a
RecursionError (a 500, and the connection reset). No request of this API nests
deeper than a few levels, so nesting is measured first, outside strings and at C
speed, and a body nesting deeper than `MAX_JSON_DEPTH` is refused before parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .problems import Problem

MAX_JSON_DEPTH = 20
# A JSON string, escapes included (unterminated too): brackets inside never count.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def nests_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays and objects more than `limit` levels deep."""
    skeleton = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    # Each pass removes at least the innermost level of every nest: a body within
    # the limit is empty after `limit` passes (usually after one or two).
    rest = skeleton
    for _ in range(limit):
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == rest:
            break
        rest = shorter
    if not rest:
        return False
    # Too deep, or brackets that do not pair (not JSON anyway): count to tell.
    depth = 0
    for char in skeleton:
        depth += 1 if char in b"[{" else -1
        if depth > limit:
            return True
        if depth < 0:
            return False
    return False


def parse_json(body: bytes) -> Any:
    """The decoded body, or a 400 problem for a body that is not JSON or nests too deep."""
    if nests_too_deep(body):
        raise Problem(
            400,
            f"Le corps de la requête imbrique trop de niveaux (au plus {MAX_JSON_DEPTH}).",
            code="json_too_deep",
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "Le corps de la requête n'est pas du JSON valide.", code="invalid_json") from exc
