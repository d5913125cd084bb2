"""Click parameter types shared by every command: number lists with ranges (seeds, NFE values, times).

One type parses ``"0-63"``, ``"1,5,9"``, ``"3,4,5"`` and ``"0-3,10"`` for every option that takes a list,
with bounds checked and the number of entries capped so that a typo such as ``--seeds 0-200000000`` is
refused at once instead of filling the memory.

>>> NumberList().convert("0-2,7", None, None)
[0, 1, 2, 7]
>>> NumberList(float, ranges=False).convert("0.5, 0.25", None, None)
[0.5, 0.25]
"""

from __future__ import annotations

import click

MAX_LIST = 10_000_000  # entries; 10M seeds already take hours of sampling on any machine
MAX_SEED = 2**63 - 1


class NumberList(click.ParamType):
    """Comma-separated numbers; with ``ranges`` an item ``a-b`` stands for a..b inclusive (integers only).

    ``minimum``/``maximum`` bound every entry; ``max_count`` bounds how many entries the list may have.
    """

    name = "list"

    def __init__(self, kind: type = int, *, minimum: float | None = 0, maximum: float | None = MAX_SEED,
                 ranges: bool = True, max_count: int = MAX_LIST) -> None:
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.ranges = ranges and kind is int
        self.max_count = max_count

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """The placeholder in ``--help``: ``A-B,C,...`` with ranges, else ``N,N,...`` (integers) or ``X,X,...``."""
        return "A-B,C,..." if self.ranges else ("N,N,..." if self.kind is int else "X,X,...")

    def convert(self, value, param, ctx):  # type: ignore[override]
        """Parse ``value`` into a list of ``kind`` (a list passes through); a click usage error for an item that is
        not a number, a range that runs backwards, a value out of bounds, or more than ``max_count`` entries.
        """
        if isinstance(value, list):
            return value
        text = str(value)
        pieces = [p.strip() for p in text.split(",") if p.strip()]
        if not pieces:
            self.fail(f"{text!r} is empty: give at least one value", param, ctx)
        spans: list[tuple[float, float]] = []
        for piece in pieces:
            lo, sep, hi = piece.partition("-") if self.ranges and piece.lstrip("-").count("-") else (piece, "", "")
            try:
                a = self.kind(lo)
                b = self.kind(hi) if sep else a
            except ValueError:
                where = f" in {text!r}" if len(pieces) > 1 else ""
                self.fail(f"{piece!r}{where} is not {'a range or ' if self.ranges else ''}"
                          f"{'an integer' if self.kind is int else 'a number'}", param, ctx)
            if b < a:
                self.fail(f"range {piece!r} runs backwards", param, ctx)
            for v in (a, b):
                if self.minimum is not None and v < self.minimum:
                    self.fail(f"{v} is below the minimum {self.minimum}", param, ctx)
                if self.maximum is not None and v > self.maximum:
                    self.fail(f"{v} is above the maximum {self.maximum}", param, ctx)
            spans.append((a, b))
        count = sum(int(b - a) + 1 if self.ranges else 1 for a, b in spans)
        if count > self.max_count:
            self.fail(f"{text!r} has {count:,} entries; at most {self.max_count:,} are allowed", param, ctx)
        out: list = []
        for a, b in spans:
            out.extend(range(int(a), int(b) + 1) if self.ranges else [a])
        return out


SEEDS = NumberList(int, minimum=0)
POSITIVE_INTS = NumberList(int, minimum=1, maximum=10**6, ranges=False, max_count=10_000)
