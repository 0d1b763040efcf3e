"""The pages bench at 10,000,000 feedback rows (``python -m bench scale``; not part of ``all`` or CI).

The same pages, fill and measurement as ``bench/pages.py``, ten times its full size: ~10 GB of disk and
the better part of an hour on a 2-core machine, most of it loading the rows. ``--rows N`` sets another
size. What it shows is whether each page's cost grows with the history: the cold-cache overview is
built from daily rollups, so it should not.
"""

from __future__ import annotations

from bench import pages

ROWS = 10_000_000


def run(args) -> list[dict]:
    return pages.run(args, rows=getattr(args, "rows", None) or ROWS)
