"""What the benchmarks share: the machine they ran on, pinning to one core, peak memory,
percentiles, free loopback ports and the table every bench prints.

Importing this module puts the project's packages (``core``, every built-in plugin) and the
test support package (``tests``, for the loopback channel) on ``sys.path``, so a bench runs
as ``.venv/bin/python bench/NAME.py`` from anywhere without PYTHONPATH.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _folder in ("tests", "plugins/creatio", "plugins/sms", "plugins/email", "core"):
    _path = str(ROOT / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

MB = 1024 * 1024


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One line describing the machine: cores, CPU model, Python, OS, and the load average
    when the bench ended (other work on the machine skews every figure)."""
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) \
        if hasattr(os, "getloadavg") else ""
    return (f"nproc {os.cpu_count()}, CPU {cpu_model()}, Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
            f"{load}")


def pin_to_one_core() -> str:
    """Pin this process (and the threads it starts later) to one core; says what it did."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[0]})
    return f"pinned to core {allowed[0]} (of {len(allowed)} allowed)"


def other_core() -> int | None:
    """A core other than the one :func:`pin_to_one_core` picks, when the machine has one."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[1] if len(allowed) > 1 else None


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds process ``pid`` has used (with ``reaped_children``, also its
    children it has waited for), from /proc; 0 where /proc has no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = fields[11:15] if reaped_children else fields[11:13]
    return sum(int(tick) for tick in ticks) / os.sysconf("SC_CLK_TCK")


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by the nearest-rank method; raises on no values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (numbers right-aligned), ready for README."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) and len(cells) > 1
               for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(row, widths, numeric, strict=True)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric, strict=True)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _is_number(text: str) -> bool:
    return text.rstrip("×x%").replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def report(title: str, notes: Sequence[str], headers: Sequence[str],
           rows: Sequence[Sequence[object]]) -> None:
    """Print a bench's result: title, the machine, notes, then the table."""
    print(f"## {title}\n")
    print(f"Machine: {machine()}")
    for note in notes:
        print(note)
    print()
    print(table(headers, rows))
    sys.stdout.flush()
