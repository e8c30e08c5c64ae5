"""pyinstrument profiling of a contender's measured window, and a self-time summary.

pyinstrument samples only the thread it was started on, so work done in other
threads (eventwire's poll thread when it serves reports, librdkafka's own
threads) is not in it. C functions (``produce``, ``poll``, msgspec's ``encode``)
have no frame of their own: their time is the *self* time of the Python
function that calls them.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

__all__ = ["format_hot_spots", "hot_spots", "profiled"]


def hot_spots(root: Any, top: int = 20) -> list[tuple[str, float, float, float]]:
    """``(function (file:line), self s, inclusive s, self share)`` sorted by self time."""
    self_time: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    total = root.time or 1e-12

    def walk(frame: Any, active: frozenset[str]) -> None:
        if frame.is_synthetic:
            return
        key = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        self_time[key] += frame.total_self_time
        if key not in active:  # count recursion once
            inclusive[key] += frame.time
        for child in frame.children:
            walk(child, active | {key})

    walk(root, frozenset())
    ranked = sorted(self_time.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [(k, s, inclusive[k], s / total) for k, s in ranked]


def format_hot_spots(root: Any, top: int = 20) -> str:
    """A markdown table of :func:`hot_spots`."""
    lines = [
        f"total sampled: {root.time:.3f} s (main thread)\n",
        "| function (file:line) | self s | self % | inclusive s |",
        "|---|---:|---:|---:|",
    ]
    for key, own, incl, share in hot_spots(root, top):
        lines.append(f"| `{key}` | {own:.3f} | {share:.1%} | {incl:.3f} |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def profiled(path: str | None, *, interval_s: float = 0.0002) -> Iterator[None]:
    """Profile the block when ``path`` is set; write ``path`` (tree), ``.html`` and ``.top.md``."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler  # noqa: PLC0415

    profiler = Profiler(interval=interval_s)
    profiler.start()
    try:
        yield
    finally:
        session = profiler.stop()
        with open(path, "w", encoding="utf-8") as out:
            out.write(profiler.output_text(unicode=True, color=False, show_all=False))
        with open(path + ".html", "w", encoding="utf-8") as out:
            out.write(profiler.output_html())
        root = session.root_frame(trim_stem=False)
        if root is not None:
            with open(path + ".top.md", "w", encoding="utf-8") as out:
                out.write(format_hot_spots(root))
