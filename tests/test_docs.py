"""The documentation's examples run and print what the pages show (issue 21, item 5).

Convention (written down for authors in docs/README.md, "Examples that run"):

* Every fenced block opened with three backticks and ``python`` in ``README.md`` and ``docs/*.md``
  runs.  The blocks of one page run in order in one fresh namespace (a page reads like a
  notebook: a later block may use what an earlier one defined), with the working directory a
  temporary folder.  Blocks in other languages (``bash``, ``text``, none) are not run.
* The output a block prints is shown in a ``text`` block right after it (only blank lines
  between).  A block that prints must be followed by one, and a block followed by one must print
  it.  Lines are compared one by one, surrounding blanks ignored and runs of blanks equal:
  - a number with a decimal point or an exponent matches within one unit of its last shown digit
    (``25.5`` matches 25.43 to 25.6; ``2.0e-59`` matches 1.9e-59 to 2.1e-59), so a page shows only
    the digits that are meant (float32 on another CPU, or a GPU, may move the last bits);
  - an integer (no point, no exponent) matches exactly;
  - ``...`` inside a line matches any text; a line that is only ``...`` matches any number of lines.
* A block that is too slow for the default tier carries ``<!-- doc-test: slow (reason) -->`` on the
  line just before it: the default tier leaves it (and only it) out, ``test_slow_doc_blocks`` (marked
  ``slow``) runs its whole page.  ``<!-- doc-test: skip (reason) -->`` never runs a block (an
  optional tool, a GPU); every such block must be listed in ``SKIPPED`` below with its reason.
  Both are kept rare: examples are shrunk instead.

The pages' examples use small sizes so that this file costs little in CPU-seconds in the default
tier; ``test_api_reference_builds`` (slow) builds the API reference with pdoc.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest


ROOT = Path(__file__).resolve().parents[1]
#: Pages that run on the optimised programs users run (tests/conftest.py, ``users_programs``): fitting.md,
#: whose printed output moves with the last bit of the compiled programs (its cross-validated ``cv_nll`` moves
#: in its third decimal when LLVM's optimisations are off), and, for time, README.md (its example simulates
#: 1000 neurons for 1 s: 8.3 CPU-s on the unoptimised programs, 3.0 on the optimised ones, compilation
#: included) and gradients.md (eight optimiser steps of 64 neurons for 0.5 s, forward and backward: 13.2
#: CPU-s against 6.8 for the page, measured alone); both print the same either way.  They come last, since
#: the fixture stays on for the rest of the module.
USERS_PROGRAMS = ("README.md", "docs/fitting.md", "docs/gradients.md")
PAGES = sorted([ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")),
               key=lambda p: str(p.relative_to(ROOT)) in USERS_PROGRAMS)

#: Blocks that never run, by (page, first code line): each needs a tool the suite does not have.
SKIPPED: dict[tuple[str, str], str] = {}

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(slow|skip)\s*\((.+)\)\s*-->\s*$")
_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"


class Block(NamedTuple):
    page: str
    line: int                      # 1-based line of the opening fence
    code: str
    expected: str | None           # the following ```text block, if any
    marker: str | None             # "slow", "skip" or None
    reason: str | None


def parse_page(path: Path) -> list[Block]:
    """The python blocks of a page, each with its expected output and marker."""
    lines = path.read_text().splitlines()
    fences = []                    # (lang, first line, body lines, line before the fence)
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code block never closed")
        fences.append((lang, start, lines[start + 1:j], j))
        i = j + 1
    blocks = []
    for n, (lang, start, body, end) in enumerate(fences):
        if lang != "python":
            continue
        marker = reason = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mm = _MARKER.match(lines[k]) if k >= 0 else None
        if mm:
            marker, reason = mm.group(1), mm.group(2).strip()
        expected = None
        if n + 1 < len(fences) and fences[n + 1][0] == "text":
            between = lines[end + 1:fences[n + 1][1]]
            if all(not s.strip() for s in between):
                expected = "\n".join(fences[n + 1][2])
        blocks.append(Block(path.name if path.parent == ROOT else f"docs/{path.name}", start + 1,
                            "\n".join(body), expected, marker, reason))
    return blocks


def _line_matches(expected: str, actual: str) -> bool:
    exp, act = " ".join(expected.split()), " ".join(actual.split())
    parts = re.split(rf"(\.\.\.|{_NUMBER})", exp)
    pattern, numbers = "", []
    for idx, part in enumerate(parts):
        if idx % 2 == 0:
            pattern += r"\s*".join(re.escape(w) for w in part.split(" ")) if part else ""
        elif part == "...":
            pattern += ".*?"
        else:
            pattern += f"({_NUMBER})"
            numbers.append(part)
    m = re.fullmatch(pattern, act)
    if not m:
        return False
    for want, got in zip(numbers, m.groups()):
        if re.fullmatch(r"[-+]?\d+", want):
            if int(want) != int(float(got)) or not re.fullmatch(r"[-+]?\d+", got):
                return False
            continue
        mantissa, _, exponent = want.lower().partition("e")
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
        if not math.isclose(float(got), float(want), abs_tol=unit * (1 + 1e-9)):
            return False
    return True


def output_matches(expected: str, actual: str) -> bool:
    """The comparison of the module docstring: line by line, numbers to their last shown digit."""
    exp = [s for s in expected.strip("\n").splitlines()]
    act = [s for s in actual.strip("\n").splitlines()]

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and _line_matches(exp[i], act[j]) and match(i + 1, j + 1)

    return match(0, 0)


def run_page(blocks: list[Block], include_slow: bool) -> list[str]:
    """Run a page's blocks in order in one namespace; the list of problems found (empty: all good)."""
    namespace: dict = {"__name__": "__doc_example__"}
    problems = []
    for b in blocks:
        if b.marker == "skip" or (b.marker == "slow" and not include_slow):
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(b.code, f"{b.page}:{b.line}", "exec"), namespace)
        except Exception:
            problems.append(f"{b.page}:{b.line}: the block raised\n{traceback.format_exc(limit=-3)}")
            break                                       # the later blocks may depend on this one
        printed = out.getvalue()
        if b.expected is None and printed.strip():
            problems.append(f"{b.page}:{b.line}: the block prints but the page shows no ```text block "
                            f"after it; it printed:\n{printed}")
        elif b.expected is not None and not output_matches(b.expected, printed):
            problems.append(f"{b.page}:{b.line}: printed output differs from the page.\n--- page:\n"
                            f"{b.expected}\n--- printed:\n{printed}")
    return problems


ALL = {p.name if p.parent == ROOT else f"docs/{p.name}": parse_page(p) for p in PAGES}
RUNNABLE = [name for name, blocks in ALL.items() if any(b.marker is None for b in blocks)]
WITH_SLOW = [name for name, blocks in ALL.items() if any(b.marker == "slow" for b in blocks)]


@pytest.mark.parametrize("page", RUNNABLE)
def test_doc_examples_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch, request):
    if page in USERS_PROGRAMS:
        request.getfixturevalue("users_programs")
    monkeypatch.chdir(tmp_path)
    problems = run_page(ALL[page], include_slow=False)
    assert not problems, "\n\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("page", WITH_SLOW or ["(none)"])
def test_slow_doc_blocks(page, tmp_path, monkeypatch):
    if page == "(none)":
        return                                         # no page has a slow block: nothing to run
    monkeypatch.chdir(tmp_path)
    problems = run_page(ALL[page], include_slow=True)
    assert not problems, "\n\n".join(problems)


def test_doc_markers_are_few_and_justified():
    """Skipped blocks are listed above with their reason; slow blocks are rare; every python block
    of the docs is seen by this file (no block hidden in an unclosed fence)."""
    skipped = {(b.page, b.code.strip().splitlines()[0]): b.reason
               for blocks in ALL.values() for b in blocks if b.marker == "skip"}
    assert set(skipped) == set(SKIPPED), ("skip markers and SKIPPED differ", skipped, SKIPPED)
    slow = [f"{b.page}:{b.line} ({b.reason})" for blocks in ALL.values() for b in blocks if b.marker == "slow"]
    total = sum(len(blocks) for blocks in ALL.values())
    assert total >= 10, total
    assert len(slow) <= 4, slow       # networks.md: training, the CV's gradient, closed-loop slopes, sharding
    for blocks in ALL.values():
        for b in blocks:
            assert b.marker is None or b.reason, (b.page, b.line, "a marker needs a reason")


def test_the_output_comparison_can_fail(tmp_path):
    """The comparison itself: numbers to their last shown digit, integers exactly, wildcards."""
    assert output_matches("25.5 Hz", "25.43 Hz") and output_matches("25.5 Hz", "25.6 Hz")
    assert not output_matches("25.5 Hz", "25.39 Hz") and not output_matches("25.5 Hz", "25.5 kHz")
    assert output_matches("2.0e-59", "1.96e-59") and not output_matches("2.0e-59", "2.2e-59")
    assert output_matches("(800, 10000)", "(800, 10000)") and not output_matches("(800, 10000)", "(800, 10001)")
    assert output_matches("7 20.1", "7 20.13") and not output_matches("7 20.1", "8 20.13")
    assert output_matches("{'U0': 0.2...}", "{'U0': 0.2000043}")
    assert output_matches("a\n...\nz", "a\nb\nc\nz") and output_matches("a\n...\nz", "a\nz")
    assert not output_matches("a\nz", "a\nb\nz") and not output_matches("a\nb", "a")
    assert output_matches("x   1.5  y", "x 1.5 y")
    page = tmp_path / "probe.md"
    page.write_text("<!-- doc-test: slow (probe) -->\n```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n"
                    "```python\nprint('no output shown')\n```\n")
    blocks = parse_page(page)
    assert [b.marker for b in blocks] == ["slow", None] and blocks[0].expected == "3"
    problems = run_page(blocks, include_slow=True)
    assert len(problems) == 2 and "differs" in problems[0] and "shows no" in problems[1]
    assert run_page(blocks, include_slow=False) == [problems[1]]


@pytest.mark.slow
def test_api_reference_builds(tmp_path):
    """The API reference of docs/README.md builds from the docstrings with pdoc (the `docs` extra:
    `.venv/bin/pip install -e ".[docs]"`).  Without pdoc this fails, saying how to install it."""
    import importlib.util
    assert importlib.util.find_spec("pdoc") is not None, \
        'pdoc is not installed: run `.venv/bin/pip install -e ".[docs]"` (the docs extra of pyproject.toml)'
    out = tmp_path / "api"
    proc = subprocess.run([sys.executable, "-m", "pdoc", "jaxlif", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in ("jaxlif.html", "jaxlif/network.html", "jaxlif/fitting.html", "jaxlif/spike_stats.html",
                 "jaxlif/batch.html"):
        assert (out / page).is_file(), (page, sorted(str(p.relative_to(out)) for p in out.rglob("*.html"))[:40])
    top = (out / "jaxlif.html").read_text()
    assert "simulate_cond_lif_poisson" in top and "ratio_curve" in top
    stats = (out / "jaxlif" / "spike_stats.html").read_text()
    assert "soft_isi_cv" in stats and "van_rossum_distance" in stats
