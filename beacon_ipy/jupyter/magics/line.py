"""Splitting a magic's line: ``[OPTIONS] NAME [= EXPR | EXPR, ...]``.

argparse cannot split such lines (the expression after the name is Python, with its own
quotes, commas and ``=``), so the magics first find NAME here and hand the options to
IPython's ``magic_arguments``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from IPython.core.error import UsageError


def tokens(line: str) -> Iterator[tuple[int, int]]:
    """(start, end) spans of whitespace-separated tokens; quotes group."""
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return
        start = i
        quote = None
        while i < n and (quote or not line[i].isspace()):
            ch = line[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            i += 1
        yield start, i


def split_line(line: str, valued_options: set[str]) -> tuple[str, str | None, str]:
    """Split a magic line into (options text, NAME, rest after NAME).

    Options come first; ``valued_options`` take the next token as their value unless
    written ``--opt=value``. NAME is unquoted. For ``NAME=EXPR`` (no spaces), rest is
    ``"=EXPR"``.
    """
    expect_value = False
    for start, end in tokens(line):
        token = line[start:end]
        if expect_value:
            expect_value = False
            continue
        if token.startswith("-") and not is_number(token):
            expect_value = token in valued_options
            continue
        raw = token
        equal = top_level_equal(raw)
        if equal is not None:
            raw, rest = raw[:equal], line[start + equal:]
        else:
            rest = line[end:]
        try:
            parts = shlex.split(raw)
        except ValueError as exc:
            raise UsageError(f"cannot read the channel name {raw!r}: {exc}") from None
        name = parts[0] if parts else ""
        return line[:start], name, rest.strip()
    return line, None, ""


def is_number(token: str) -> bool:
    """Does ``token`` read as a number (``-1`` is a value, not an option)?"""
    try:
        float(token)
    except ValueError:
        return False
    return True


def top_level_equal(token: str) -> int | None:
    """Index of an assignment '=' outside quotes in ``token`` (not '==')."""
    quote = None
    for i, ch in enumerate(token):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "=" and token[i + 1:i + 2] != "=" and (i == 0 or token[i - 1] not in "=!<>"):
            return i
    return None
