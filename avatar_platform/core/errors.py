"""One error type for everything a user can get wrong, rendered as one line by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class AvatarPlatformError(Exception):
    """A problem the user can fix: what was wrong, what was expected, and how to fix it."""

    def __init__(self, what: str, expected: str | None = None, fix: str | None = None):
        self.what = what
        self.expected = expected
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what.rstrip(".")]
        if self.expected:
            parts.append(f"expected {self.expected.rstrip('.')}")
        if self.fix:
            parts.append(f"fix: {self.fix.rstrip('.')}")
        return "; ".join(parts)

    def __reduce__(self):  # survives pickling through Ray
        return (type(self), (self.what, self.expected, self.fix))


def read_user_file(path: Path, what: str, *, expected: str, fix: str, parse: Callable[[str], T] = str) -> T:
    """`parse` of the UTF-8 text of a file the user supplied (a caption, a JSON description); a
    file that cannot be read or parsed is one error: "<what> '<path>' could not be read (why)"."""
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSON errors are ValueErrors
        raise AvatarPlatformError(f"{what} '{path}' could not be read ({err})", expected, fix) from None


def caused_by_interrupt(err: BaseException) -> bool:
    """Whether a KeyboardInterrupt is `err` or among its causes and contexts (libraries such as
    Ray Data wrap a Ctrl-C in errors of their own)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        todo += [current.__cause__, current.__context__]
    return False
