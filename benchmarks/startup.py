"""Start-up times of the command line: import, first and second ``jaxlif fit-stp`` invocation.

Question: how long does a user wait for ``jaxlif fit-stp`` the first time (compilation) and the
second time (compiled programs loaded from the persistent cache), end to end, in a fresh process?
Target: the second invocation under 3 s.

Each measurement starts a new process (``subprocess``), with a fresh cache folder per scenario so
that "first" really compiles; wall time and the child's CPU time (user + system) are recorded, with
the load average, because the machine may be shared.  Writes the ``pkg`` section of BENCHMARKS.md
(between ``<!-- begin:pkg -->`` and ``<!-- end:pkg -->``) unless ``--no-write``.

    python benchmarks/startup.py [--repeats 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- begin:pkg -->", "<!-- end:pkg -->"
FIT = ["fit-stp", "--rates", "5", "10", "20", "40", "--ratios", "0.61", "0.45", "0.33", "0.27"]


def _jaxlif() -> list[str]:
    exe = Path(sys.executable).with_name("jaxlif")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jaxlif.cli"]


def timed(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(wall s, child CPU s, exit status) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
    return wall, cpu, proc.returncode


def measure(repeats: int) -> list[tuple[str, list[tuple[float, float, int]]]]:
    rows = []
    base_env = dict(os.environ)
    rows.append(("`python -c 'import jaxlif'`", [timed([sys.executable, "-c", "import jaxlif"], base_env)
                                                 for _ in range(repeats)]))
    rows.append(("`jaxlif --version`", [timed(_jaxlif() + ["--version"], base_env) for _ in range(repeats)]))
    for label, extra in (("`jaxlif fit-stp ...` (progress lines on)", []),
                         ("`jaxlif fit-stp --quiet ...`", ["--quiet"])):
        for _ in range(repeats):
            cache = Path(tempfile.mkdtemp(prefix="jaxlif-cache-"))
            env = dict(base_env, JAXLIF_CACHE_DIR=str(cache))
            try:
                first = timed(_jaxlif() + FIT + extra, env)
                second = timed(_jaxlif() + FIT + extra, env)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            rows.append((f"{label}, first (empty cache)", [first]))
            rows.append((f"{label}, second (same cache)", [second]))
    merged: dict[str, list] = {}
    for label, runs in rows:
        merged.setdefault(label, []).extend(runs)
    return list(merged.items())


def section(results, load_start, load_end, repeats: int) -> str:
    lines = [BEGIN, "## Start-up: import and the `jaxlif` command (`python benchmarks/startup.py`)", "",
             f"Written {datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.processor() or platform.machine()}, "
             f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}; load average (1/5/15 min) "
             f"{tuple(round(x, 2) for x in load_start)} at start, {tuple(round(x, 2) for x in load_end)} at end. "
             f"Every row is a fresh process; best and median of {repeats}. CPU = the child's user + system time "
             "(less sensitive to other load than wall time). Target: a second `jaxlif fit-stp` under 3 s.", "",
             "| what | wall s (best) | wall s (median) | CPU s (best) | exit |", "|---|---|---|---|---|"]
    for label, runs in results:
        walls = sorted(r[0] for r in runs)
        lines.append(f"| {label} | {walls[0]:.2f} | {walls[len(walls) // 2]:.2f} | "
                     f"{min(r[1] for r in runs):.2f} | {','.join(sorted({str(r[2]) for r in runs}))} |")
    second = [sorted(r[0] for r in runs)[len(runs) // 2] for label, runs in results if "second" in label]
    met = bool(second) and max(second) < 3.0
    lines += ["", f"Target (a second `jaxlif fit-stp` under 3 s, median of each row): {'met' if met else 'not met'} "
              f"here (slowest median of a second invocation {max(second) if second else float('nan'):.2f} s).",
              "", "On a second invocation every compiled program comes from the caches: the fit's optimiser loop "
              "as a whole executable (`executables/` in the cache folder: no tracing, no lowering), the other "
              "programs from JAX's compilation cache (traced and lowered to be looked up, a few hundred ms). "
              "What remains is importing jax and jaxlif (about 1.5 s) and the fit itself. The fit runs its "
              "compiled loop in chunks and prints progress from Python between them, so the progress lines do "
              "not keep the loop out of the cache.", END]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(new)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per row (default 3)")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"argument --repeats: must be at least 1, got {args.repeats}")
    load_start = os.getloadavg()
    try:
        results = measure(args.repeats)
    except KeyboardInterrupt:
        print("\n[startup] interrupted: BENCHMARKS.md unchanged", file=sys.stderr)
        return 130
    text = section(results, load_start, os.getloadavg(), args.repeats)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
