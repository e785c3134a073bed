"""Progress for long work: a rich bar on a terminal, sparse plain lines elsewhere (CI, logs)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class _PlainProgress:
    """Prints a line every ~10 % so that logs show the job is alive without flooding them."""

    def __init__(self, description: str, total: int):
        self.description, self.total, self.done = description, total, 0
        self.next_report = 0.1
        self.start = time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        if self.total and self.done / self.total >= self.next_report:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"{self.description}: {self.done}/{self.total} ({rate:.1f}/s)", file=sys.stderr, flush=True)
            while self.done / self.total >= self.next_report:
                self.next_report += 0.1


class _RichProgress:
    def __init__(self, progress: Progress, task_id):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int) -> None:
        self.progress.advance(self.task_id, n)


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0):
    """Yield an object with `.advance(n)`."""
    if not console.is_terminal:
        plain = _PlainProgress(description, total)
        plain.done = completed
        yield plain
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=total, completed=completed)
        yield _RichProgress(progress, task_id)
