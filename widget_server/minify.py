"""A deliberately small JavaScript compactor for the widget's own scripts.

The scripts follow a few rules so that this is safe without a full parser:
comments are whole lines starting with `//`; no template literals. It drops
comment and blank lines, indentation, and spaces next to punctuation outside
strings and regular expressions; it joins a line to the previous one when that
one ends with `{`, `;`, `,` or `(` (no automatic semicolon can be involved
there). Identifiers are not renamed: the sources are written short instead.
Anything outside the rules fails at start-up rather than shipping broken code.
"""

from __future__ import annotations

import re

_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_REGEX = re.compile(r"/(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\])+/[a-z]*")
_WORDS = re.compile(r"[^\s\"'`/]+")
_PUNCTUATION = set("{}()[];,:=+-*<>!?&|.%^~")
# After one of these, "/" starts a regular expression rather than a division.
_BEFORE_REGEX = set("{([;,:=+-*<>!?&|%^~")
_KEYWORDS_BEFORE_REGEX = ("return", "typeof", "case", "else", "in", "of", "void", "throw", "delete", "new")


class UnsafeScript(ValueError):
    pass


def compact_js(source: str) -> str:
    lines: list[str] = []
    for number, raw in enumerate(source.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        line = _compact_line(line, number)
        if lines and lines[-1][-1] in "{;,(":
            lines[-1] += line
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _compact_line(line: str, number: int) -> str:
    out = ""
    pos = 0
    while pos < len(line):
        char = line[pos]
        if char.isspace():
            end = pos + 1
            while end < len(line) and line[end].isspace():
                end += 1
            before, after = out[-1:], line[end:end + 1]
            # Keep a space between two words, and in "+ +" / "- -" (not ++ or --).
            if (before not in _PUNCTUATION and after not in _PUNCTUATION) or (
                    before == after and before in "+-"):
                out += " "
            pos = end
            continue
        if char == "`" or line.startswith(("//", "/*"), pos):
            raise UnsafeScript(f"line {number}: template literal or trailing comment: {line!r}")
        if char in "\"'":
            match = _STRING.match(line, pos)
        elif char == "/" and _regex_may_start(out):
            match = _REGEX.match(line, pos)
        elif char == "/":
            out += "/"
            pos += 1
            continue
        else:
            match = _WORDS.match(line, pos)
        if match is None:
            raise UnsafeScript(f"line {number}: unterminated string or expression: {line!r}")
        out += match.group()
        pos = match.end()
    return out


def _regex_may_start(out: str) -> bool:
    stripped = out.rstrip()
    if not stripped or stripped[-1] in _BEFORE_REGEX:
        return True
    return re.search(r"(?:^|[^\w$])(?:" + "|".join(_KEYWORDS_BEFORE_REGEX) + r")$", stripped) is not None
