"""One error type for everything a user can get wrong, rendered as one line by the CLI."""

from __future__ import annotations


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
