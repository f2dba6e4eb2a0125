"""The ``jaxlif`` command line.

Usage::

    jaxlif fit-stp --rates 5 10 20 40 --ratios 0.61 0.45 0.33 0.27 [--mode tutorial] [--json]
    jaxlif fit-stp --csv curve.csv --out fit.png
    jaxlif fit-trains trains.csv [--model tm|tm4|depression|srp|all] [--noise gaussian|gamma|binomial|gamma_kernel]
                      [--noise-sd SD] [--normalise] [--json] [--out fit.png|fit.pdf|fit.json]
    jaxlif fit-trains --mossy-fibre --model all
    jaxlif --version

Each subcommand lives in its own module ``jaxlif/cli/<name>.py`` with one
``add_<name>(subparsers)`` function that builds its parser and sets ``func`` to a handler
``handler(args) -> int``; :data:`SUBCOMMANDS` lists them, so adding a command is one module plus
one entry.  Every subcommand also gets the options of :func:`add_common_options`.

Behaviour shared by all subcommands:

* compiled programs are kept in a persistent cache (``jaxlif._cache``: ``--cache-dir``,
  ``--no-cache``, environment variable ``JAXLIF_CACHE_DIR``, default
  ``~/.cache/jaxlif/jax``), so a second invocation with the same sizes skips compilation;
  when JAX spends more than half a second compiling, one line on stderr says so;
* bad input (``ValueError``/``TypeError`` from the library's validators, unreadable files)
  ends with exit status 2 and a one-line message, as argparse does; a file that cannot be
  read or written (``OSError``) ends with status 1 and a one-line message;
* ``--out`` is checked before any work (``jaxlif.cli._common.resolve_out``): its extension
  chooses a figure (``.png``, ``.pdf``, ``.svg``; none: ``.png``) or a JSON record
  (``.json``), any other is a usage error; files are written atomically and the command
  reports the path it wrote;
* Ctrl-C ends with the one-line message ``interrupted`` and exit status 130, no traceback,
  within :data:`INTERRUPT_GRACE_S` seconds even when it arrives during a long XLA compilation
  (which Python cannot interrupt) or inside a library loop that absorbs the ``KeyboardInterrupt``
  (a fit's interval or cross-validation stage): a watchdog thread, woken by the signal itself
  (``signal.set_wakeup_fd``), then removes any half-written output file and ends the process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from typing import Sequence

from jaxlif.cli._common import json_safe
from jaxlif.cli.fit_stp import add_fit_stp, read_curve_csv
from jaxlif.cli.fit_trains import add_fit_trains

__all__ = ["main", "build_parser", "add_common_options", "SUBCOMMANDS", "read_curve_csv", "json_safe",
           "EXIT_INTERRUPTED"]

#: Functions adding one subcommand each to the ``jaxlif`` parser.
SUBCOMMANDS = [add_fit_stp, add_fit_trains]

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Seconds the main thread has, after Ctrl-C, to stop by itself before the process is ended.
INTERRUPT_GRACE_S = 2.0


def _version() -> str:
    from jaxlif import __version__
    return __version__


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The compilation-cache options every subcommand takes."""
    group = parser.add_argument_group("compilation cache")
    group.add_argument("--cache-dir", metavar="DIR", default=None,
                       help="keep compiled programs in DIR (default: $JAXLIF_CACHE_DIR, else "
                            "$XDG_CACHE_HOME/jaxlif/jax or ~/.cache/jaxlif/jax)")
    group.add_argument("--no-cache", action="store_true",
                       help="do not read or write the compilation cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlif",
        description="jaxlif: LIF neurons, conductance synapses and short-term plasticity in JAX.",
        epilog="Compiled programs are cached on disk (see --cache-dir in a command's --help); "
               "Ctrl-C exits with status 130.")
    parser.add_argument("--version", action="version", version=f"jaxlif {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    for subparser in sub.choices.values():
        add_common_options(subparser)
    return parser


def _setup_cache(args) -> None:
    """Enable the persistent cache (unless ``--no-cache``) and announce compilation on stderr."""
    from jaxlif import _cache

    with warnings.catch_warnings(record=True) as caught:     # a refused cache folder: one line, no source
        warnings.simplefilter("always")
        folder = None if args.no_cache else _cache.enable(args.cache_dir)
    for w in caught:
        text = str(w.message)
        print(f"jaxlif {args.command}: {text[len('jaxlif: '):] if text.startswith('jaxlif: ') else text}",
              file=sys.stderr, flush=True)
    if getattr(args, "quiet", False):
        return
    where = f"; compiled programs are kept in {folder}" if folder is not None else ""
    _cache.announce_compilation(f"jaxlif {args.command}: compiling{where} ...")


class _InterruptGuard:
    """Ctrl-C that always ends the command (module docstring): the handler raises
    ``KeyboardInterrupt`` in the main thread as Python's own does and records it; a daemon thread
    wakes on the signal through ``signal.set_wakeup_fd`` (even while the main thread is inside
    XLA) and, if the process is still running ``grace_s`` later, removes the partial output files
    (:data:`jaxlif.cli._common.PARTIAL_FILES`), prints ``interrupted`` and exits with 130.  After
    Ctrl-C, ``RuntimeWarning`` s (NumPy's, on the partial results of a stopped fit) are silenced, so
    that ``interrupted`` is the only line.  A no-op outside the main thread (signals can only be
    handled there), and where Ctrl-C is ignored (``SIG_IGN``, as for a script's background jobs)."""

    def __init__(self, name: list, grace_s: float = INTERRUPT_GRACE_S):
        self.name, self.grace_s, self.interrupted, self.active = name, grace_s, False, False
        if threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:   # e.g. a background job of a script
            return
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        self.old_handler = signal.signal(signal.SIGINT, self._handler)
        self.old_fd = signal.set_wakeup_fd(self.write_fd)
        self.thread = threading.Thread(target=self._watch, name="jaxlif-interrupt", daemon=True)
        self.active = True
        self.thread.start()

    def _handler(self, signum, frame):
        if not self.interrupted:
            self.interrupted = True
            warnings.simplefilter("ignore", RuntimeWarning)
        raise KeyboardInterrupt

    def _watch(self) -> None:
        import time
        from jaxlif.cli import _common  # noqa: F401  (imported now, not in the middle of an interrupt)

        while True:
            data = os.read(self.read_fd, 64)
            if not data or not self.active:        # closed by close()
                return
            if signal.SIGINT not in data:
                continue
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if not self.active:                # the main thread handled it
                    return
            _remove_partial_files()
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.write(2, f"\n{self.name[0]}: interrupted\n".encode())
            os._exit(EXIT_INTERRUPTED)

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        signal.set_wakeup_fd(self.old_fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL if self.old_handler is None else self.old_handler)
        os.write(self.write_fd, b"\0")             # wake the thread so that it ends
        self.thread.join(timeout=1.0)
        os.close(self.read_fd)
        os.close(self.write_fd)
        self.warnings.__exit__(None, None, None)


def _remove_partial_files() -> None:
    """Delete the half-written output files of an interrupted command (best effort)."""
    from jaxlif.cli._common import PARTIAL_FILES
    for path in list(PARTIAL_FILES):
        try:
            os.unlink(path)
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxlif`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input exits with status 2 (``SystemExit``) and a message naming the problem; an
    unwritable output 1; Ctrl-C 130 (module docstring).
    """
    parser = build_parser()
    args = None
    name = ["jaxlif"]
    guard = _InterruptGuard(name)
    try:
        args = parser.parse_args(argv)
        name[0] = f"jaxlif {args.command}"
        _setup_cache(args)
        status = int(args.func(args) or 0)
        if guard.interrupted:            # a library loop absorbed Ctrl-C: the result is not the full job
            raise KeyboardInterrupt
        return status
    except KeyboardInterrupt:
        _remove_partial_files()                  # normally removed by the writer itself
        print(f"\n{name[0]}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as err:
        parser.exit(2, f"jaxlif {args.command}: error: {err}\n")
    except OSError as err:
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        parser.exit(1, f"jaxlif {args.command}: error: {where}{err.strerror or err}\n")
    finally:
        guard.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
