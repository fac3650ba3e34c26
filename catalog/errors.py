"""Errors raised while reading market data: each names the file, the line and the problem."""

from __future__ import annotations


class IngestError(Exception):
    """A problem in an input file that stops the ingest (default policy: strict).

    The message always carries the file and line (1-based, or 0 when the problem is not tied to
    one line) so that a user can open the file at the offending place.
    """

    def __init__(self, file: str, line: int, problem: str) -> None:
        self.file = str(file)
        self.line = int(line)
        self.problem = problem
        where = f"{self.file}:{self.line}" if self.line else self.file
        super().__init__(f"{where}: {problem}")


class CatalogError(Exception):
    """A catalog that cannot be read or written as asked (missing, clashing data, bad instrument)."""
