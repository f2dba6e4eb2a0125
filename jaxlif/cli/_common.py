"""Helpers shared by the ``jaxlif`` subcommands: output files, JSON records, progress lines.

Output rules (every subcommand with ``--out``):

* the kind of output is decided by the extension *before* any work: a figure for
  :data:`FIGURE_FORMATS`, a JSON record for ``.json`` where the command allows it; a name
  without an extension gets ``.png``; any other extension is a usage error (exit status 2) so a
  long fit is never lost to a typo;
* the folder is created and checked for writing before the work too; an output that cannot be
  written is an ``OSError`` (exit status 1, one line naming the file);
* files are written atomically (a temporary file in the same folder, then renamed), so an
  interrupted run never leaves half a file, and the command reports the path it really wrote.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_safe", "Progress", "FIGURE_FORMATS", "resolve_out", "save_figure",
           "write_json_file", "dump_json", "version_record", "add_output_options",
           "write_outputs"]

#: Figure formats ``--out`` accepts (by extension).
FIGURE_FORMATS = ("png", "pdf", "svg")


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats (infinite or undefined standard errors) by ``None`` (JSON null)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def version_record() -> dict:
    """``{"jaxlif_version": ...}``: what every JSON record carries, so a result names its code."""
    from jaxlif import __version__
    return {"jaxlif_version": __version__}


def resolve_out(out: str | os.PathLike | None, *, json_ok: bool = False) -> tuple[Path | None, str]:
    """The ``--out`` path and its kind (``"figure"`` or ``"json"``), checked before any work.

    A name without an extension gets ``.png``.  The folder is created if needed and must be
    writable.

    Raises:
        ValueError: an extension that is neither a figure format nor (with ``json_ok``) ``.json``.
        OSError: the folder cannot be created or written (with ``filename`` set).
    """
    if out is None:
        return None, ""
    path = Path(out)
    ext = path.suffix.lower().lstrip(".")
    if not ext:
        path, ext = path.with_name(path.name + ".png"), "png"
    kinds = list(FIGURE_FORMATS) + (["json"] if json_ok else [])
    if ext not in kinds:
        raise ValueError(f"--out {out}: unknown extension '.{ext}'; use "
                         f"{', '.join('.' + k for k in kinds)} (no extension: .png)")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file name", str(path))
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write into this folder", str(folder))
    return path, ("json" if ext == "json" else "figure")


#: Temporary files being written (removed if Ctrl-C has to end the process: ``jaxlif.cli``).
PARTIAL_FILES: set = set()


def _atomic(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary name stays within the 255 bytes a file name may have (the stem is shortened),
    and an ``OSError`` names ``path``, the file the user asked for, not the temporary one."""
    suffix = f".partial-{os.getpid()}{path.suffix}"
    stem = path.stem
    while len(f".{stem}{suffix}".encode()) > 255:
        stem = stem[:-1]
    tmp = path.with_name(f".{stem}{suffix}")
    PARTIAL_FILES.add(str(tmp))
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        if tmp.exists():
            tmp.unlink()
        PARTIAL_FILES.discard(str(tmp))
    return path


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure to ``path`` (format from the extension), atomically."""
    fmt = path.suffix.lower().lstrip(".")
    return _atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def dump_json(record: dict) -> str:
    """``record`` as indented JSON text (non-finite numbers as null)."""
    return json.dumps(json_safe(record), indent=2, allow_nan=False) + "\n"


def write_json_file(record: dict, path: Path) -> Path:
    """Write ``record`` as JSON to ``path``, atomically."""
    return _atomic(path, lambda tmp: tmp.write_text(dump_json(record)))


def add_output_options(parser, figure: str) -> None:
    """``--json``, ``--out FILE`` and ``--quiet``; ``figure`` says what the figure shows."""
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print the JSON record on stdout (null for an undefined or infinite "
                          "number)")
    out.add_argument("--out", metavar="FILE",
                     help=f"write {figure} as a figure (.png, .pdf, .svg; no extension: .png) "
                          f"or the JSON record (.json); checked before the fit")
    out.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def write_outputs(args, out: Path | None, kind: str, record: dict, draw, print_text) -> None:
    """The end of a fit command: the ``--out`` file (``draw(path) -> Path`` for a figure, or
    the JSON record), then stdout (the JSON record with ``--json``, else ``print_text()``),
    and one line naming the file written."""
    written = None
    if kind == "figure":
        written = draw(out)
        record["figure"] = str(written)
    elif kind == "json":
        written = write_json_file(record, out)
    if args.json:
        sys.stdout.write(dump_json(record))
    else:
        print_text()
    if written is not None and (not args.json or kind == "json"):
        print(f"wrote {written}", file=sys.stderr if args.json else sys.stdout)


class Progress:
    """Prints fit progress on stderr, at most once a second (so short fits stay silent).

    ``label`` names the number passed as the second argument (``"best RMSE"`` for ratio
    fits, ``"best NLL per point"`` for train fits).
    """

    def __init__(self, n_starts: int, stream=None, every_s: float = 1.0,
                 label: str = "best RMSE"):
        self.n_starts, self.stream, self.every_s = n_starts, stream or sys.stderr, every_s
        self.label = label
        self.t0 = self.last = time.perf_counter()

    def __call__(self, step: int, best: np.ndarray, n_done: np.ndarray) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return
        self.last = now
        worst = float(np.max(best))
        print(f"  step {step}: {self.label} {worst:.3g}, {int(n_done)}/{self.n_starts} starts "
              f"stopped ({now - self.t0:.1f} s)", file=self.stream, flush=True)
