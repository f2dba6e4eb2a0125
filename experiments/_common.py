"""Shared plumbing for the experiment scripts: command line, checks, output folders, keys, JSON.

Every experiment in this folder follows one pattern::

    NAME = "ei_explorer"
    DEFAULTS = dict(T=1000.0, dt=0.1, trials=8, seed=0, ...)   # the parameter sets of docs/conventions.md
    QUICK = dict(T=200.0, trials=2, ...)                        # the --quick size used by the tests
    EXTRA = {"rate_E": ("help text [unit]", float), ...}        # its own options
    CHECKS = {"rate_E": rates, ...}                             # range checks, run before anything is traced

    def run(cfg, log, files) -> dict:
        ...compute in one vmapped batch, save figures into cfg.out, return the summary...

    def main(argv=None) -> dict:
        return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)

    if __name__ == "__main__":
        C.script(main)

Options left unset on the command line take the ``--quick`` value when ``--quick`` is given
(and the key is in ``QUICK``), otherwise the embedded default; an explicit option always wins.
Every value is checked after parsing (:data:`STANDARD_CHECKS` plus the experiment's ``CHECKS``):
a bad one ends the script with argparse's usage message and exit status 2, before any work.

Output folders are written atomically.  A run writes into a hidden staging folder next to
``--out`` and renames it into place only when it has finished, so ``--out`` holds either the
complete previous results or the complete new ones, never a mix; an interrupted or failed run
leaves ``--out`` as it was.  An existing, non-empty ``--out`` is replaced only with
``--overwrite``.  Ctrl-C ends a script with one line and exit status 130 (:func:`script`).

Randomness: ``experiment_key(seed, stream)`` is ``fold_in(key(seed), stream)``, with a fixed
stream number per experiment, so that the experiments of one ``--seed`` never share random
numbers and each one gives the same result alone or inside ``reproduce.py``.

This module is also the scripts' import bootstrap: importing it puts the repository root on
``sys.path`` so that ``python experiments/<name>.py`` finds ``jaxlif`` without installation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "ROOT", "make_parser", "parse", "float_list", "experiment_key", "Progress", "save_figure",
    "write_json", "to_jsonable", "mean_sem", "map_batched", "shot_noise_fmp", "balanced_inh_rate",
    "spike_marks", "run_main", "script", "staged_folder", "commit_folder", "check_out", "STANDARD_CHECKS",
    "positive", "nonnegative", "at_least", "rates", "EXIT_INTERRUPTED", "enable_compilation_cache",
    "integer_counts", "duration", "positive_rates", "write_section", "claim_out",
]

#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: Help text of the options shared by all experiments.
_STANDARD_HELP = {
    "T": ("duration of one simulated run [ms]", float),
    "dt": ("time step [ms]", float),
    "trials": ("independent trials per condition (the batch is conditions x trials, one vmap)", int),
    "seed": ("integer seed; every jax.random key is derived from it", int),
    "batch_size": ("runs per vectorised chunk (vmap inside a chunk, chunks in sequence: bounds memory; "
                   "results change only by float32 rounding)", int),
}


def float_list(text: str) -> list[float]:
    """Parse ``"2,4,6"`` or a range ``"2:20:2"`` (start:stop:step, stop included) into floats [units of the option]."""
    text = text.strip()
    if ":" in text:
        try:
            parts = [float(x) for x in text.split(":")]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"range {text!r} must be start:stop:step (numbers)") from err
        if len(parts) != 3 or not all(math.isfinite(x) for x in parts) or parts[2] <= 0:
            raise argparse.ArgumentTypeError(f"range {text!r} must be start:stop:step with step > 0")
        start, stop, step = parts
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n < 1:
            raise argparse.ArgumentTypeError(f"range {text!r} is empty (stop < start)")
        return [round(start + i * step, 12) for i in range(n)]
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from err
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} holds no number")
    return values


# ----------------------------------------------------------------------------------------------
# Range checks of option values (run after parsing, before anything is computed)
# ----------------------------------------------------------------------------------------------


def _values(value) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def positive(unit: str = "") -> Callable:
    """Every value finite and > 0."""
    def check(value, cfg):
        for x in _values(value):
            if not (math.isfinite(x) and x > 0):
                return f"must be positive and finite{f' ({unit})' if unit else ''}, got {x:g}"
    return check


def nonnegative(unit: str = "") -> Callable:
    """Every value finite and >= 0."""
    def check(value, cfg):
        for x in _values(value):
            if not (math.isfinite(x) and x >= 0):
                return f"must be >= 0 and finite{f' ({unit})' if unit else ''}, got {x:g}"
    return check


def at_least(minimum: float, unit: str = "") -> Callable:
    """Every value finite and >= ``minimum``."""
    def check(value, cfg):
        for x in _values(value):
            if not (math.isfinite(x) and x >= minimum):
                return f"must be at least {minimum:g}{f' {unit}' if unit else ''}, got {x:g}"
    return check


def integer_counts(minimum: int = 1, maximum: int | None = None) -> Callable:
    """An integer in ``[minimum, maximum]``."""
    def check(value, cfg):
        if value < minimum or (maximum is not None and value > maximum):
            top = f" and at most {maximum}" if maximum is not None else ""
            return f"must be at least {minimum}{top}, got {value}"
    return check


def rates(value, cfg):
    """Poisson rates [Hz]: ``0 <= rate`` and ``rate * dt / 1000 <= 1`` (a probability per step)."""
    top = 1000.0 / cfg.dt
    for x in _values(value):
        if not (math.isfinite(x) and 0.0 <= x <= top):
            return (f"rates must lie in [0, 1000/dt] = [0, {top:g}] Hz (a spike probability "
                    f"rate*dt/1000 per step), got {x:g}")


def positive_rates(value, cfg):
    """Rates [Hz] as :func:`rates`, and none zero (they set an inter-spike interval)."""
    problem = rates(value, cfg)
    if problem:
        return problem
    for x in _values(value):
        if x <= 0:
            return f"rates must be positive here (they set an inter-spike interval), got {x:g}"


def duration(value, cfg):
    """A duration [ms]: positive, finite and at least ``cfg.dt``."""
    if not (math.isfinite(value) and value > 0):
        return f"must be positive and finite (ms), got {value:g}"
    if math.isfinite(cfg.dt) and cfg.dt > 0:
        if value < cfg.dt:
            return f"T={value:g} ms is shorter than dt={cfg.dt:g} ms"


#: Checks of the standard options (where the experiment has them).
STANDARD_CHECKS = {
    "dt": positive("ms"),
    "T": duration,
    "trials": integer_counts(1),
    "batch_size": integer_counts(1),
    "seed": integer_counts(0, 2**32 - 1),
}


def _check_config(parser: argparse.ArgumentParser, cfg, checks: dict) -> None:
    for key, check in {**STANDARD_CHECKS, **(checks or {})}.items():
        value = getattr(cfg, key, None)
        if value is None:
            continue
        problem = check(value, cfg)
        if problem:
            parser.error(f"argument --{key.replace('_', '-')}: {problem}")
    if getattr(cfg, "T", None) is not None and getattr(cfg, "dt", None) is not None:
        import jaxlif
        try:
            jaxlif.n_steps(cfg.T, cfg.dt)      # warns if the values look like seconds
        except (ValueError, TypeError) as err:
            parser.error(f"arguments --T/--dt: {err}")


def _shown(value) -> str:
    """A default or quick value for --help: long evenly spaced lists as start:stop:step (n values)."""
    if not isinstance(value, list):
        return str(value)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return ",".join(str(x) for x in value)          # names (e.g. models): as written
    if len(value) > 6:
        steps = np.diff(value)
        if np.allclose(steps, steps[0]):
            return f"{value[0]:g}:{value[-1]:g}:{steps[0]:g} ({len(value)} values)"
        return f"{value[0]:g},{value[1]:g},...,{value[-1]:g} ({len(value)} values)"
    return ",".join(f"{x:g}" for x in value)


def make_parser(doc: str, name: str, defaults: dict, quick: dict,
                extra: dict[str, tuple[str, Callable]] | None = None,
                out_default: str | None = None, outputs: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with the standard options plus ``extra``.

    Args:
        doc: the script's module docstring (first paragraph becomes the description).
        name: the experiment's name (default output folder ``results/<name>``).
        defaults: embedded defaults; a standard option (T, dt, trials, seed, batch_size) is added
            only if its key is present.
        quick: smaller values used with ``--quick``.
        extra: ``{key: (help, type)}`` for experiment-specific options (``--key-with-dashes``).
        out_default: default output folder (``results/<name>`` if not given).
        outputs: what the output folder receives (default ``"PNGs and <name>.json"``).
    """
    out_default = out_default or f"results/{name}"
    outputs = outputs or f"PNGs and {name}.json"
    parser = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py", description=doc.strip().split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options not given take the embedded default, or the --quick value with --quick. "
               "Ctrl-C stops the run (exit status 130) and leaves --out unchanged.")
    options = {k: v for k, v in _STANDARD_HELP.items() if k in defaults}
    options.update(extra or {})
    for key, (text, typ) in options.items():
        text = f"{text} (default {_shown(defaults[key])}"
        if key in quick:
            text += f"; --quick: {_shown(quick[key])}"
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None,
                            help=text + ")")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder for {outputs} (default {out_default}); written "
                             f"atomically when the run ends")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists and is not empty (otherwise that is an error)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for tests and smoke runs (a few seconds after compilation)")
    parser.set_defaults(_name=name, _out_default=out_default)
    return parser


def check_out(parser: argparse.ArgumentParser, out: Path, overwrite: bool, merge_ok: bool = False) -> None:
    """Refuse (usage error) an existing non-empty ``out`` unless ``overwrite`` (or ``merge_ok``)."""
    if out.exists() and not out.is_dir():
        parser.error(f"argument --out: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or merge_ok):
        parser.error(f"argument --out: {out} already holds results; add --overwrite to replace them, "
                     f"or choose another folder with --out")


def parse(parser: argparse.ArgumentParser, argv, defaults: dict, quick: dict,
          checks: dict | None = None, *, check_output: bool = True) -> argparse.Namespace:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``), fill unset options, check them, print the config.

    ``cfg.out`` is the final output folder (not created here).  With ``check_output`` an existing,
    non-empty ``--out`` without ``--overwrite`` is a usage error.
    """
    cfg = parser.parse_args(argv)
    for key, value in defaults.items():
        if getattr(cfg, key, None) is None:
            setattr(cfg, key, quick[key] if (cfg.quick and key in quick) else value)
    _check_config(parser, cfg, checks or {})
    cfg.out = Path(cfg.out) if cfg.out is not None else Path(cfg._out_default)
    if check_output:
        check_out(parser, cfg.out, cfg.overwrite)
    shown = {k: _short(v) for k, v in vars(cfg).items() if not k.startswith("_")}
    print(f"[{cfg._name}] config: {json.dumps(shown)}", flush=True)
    return cfg


def _short(value):
    """A printable form of a config value (long lists abbreviated)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list) and len(value) > 6:
        show = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in (value[0], value[1], value[-1])]
        return f"[{show[0]}, {show[1]}, ..., {show[2]}] ({len(value)} values)"
    return value


# ----------------------------------------------------------------------------------------------
# Atomic output folders, Ctrl-C, the compilation cache
# ----------------------------------------------------------------------------------------------


def _lock_holder(lock: Path) -> int | None:
    """The process id written in ``lock`` if that process still runs (or cannot be asked), else ``None``."""
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return -1                        # being written, or unreadable: assume a live holder
    if pid <= 0:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass                             # another user's live process
    return pid


@contextlib.contextmanager
def claim_out(parser: argparse.ArgumentParser, out: Path) -> Iterator[Path]:
    """Hold the output folder ``out`` for one run: of two runs started at once into it, the second
    stops with a usage error instead of silently replacing the first's results.

    The claim is a lock file ``.<name>.lock`` next to ``out`` created with ``O_CREAT | O_EXCL``
    (atomic: exactly one process can create it), holding the process id; it is removed when the
    block ends, however it ends.  A lock whose process no longer exists (a run killed outright) is
    taken over.  Check the folder (:func:`check_out`) *inside* the block: only then is the answer
    still true when the run commits.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    for attempt in (0, 1):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is None and attempt == 0:      # stale: its process is gone
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            who = f"process {holder}" if holder and holder > 0 else "another process"
            parser.error(f"argument --out: {out} is being written by another run ({who}, lock file {lock}); "
                         f"wait for it to finish, or choose another folder with --out")
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield out
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A fresh hidden folder next to ``final`` to write into; removed if the block does not finish.

    The caller moves it into place with :func:`commit_folder` (inside the block).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f".{final.name}.partial-{os.getpid()}-{time.monotonic_ns()}"
    stage.mkdir()
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def commit_folder(stage: Path, final: Path) -> None:
    """Move the finished ``stage`` to ``final``, replacing whatever ``final`` held (two renames)."""
    stage, final = Path(stage), Path(final)
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(final, old)
        os.rename(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(stage, final)


def enable_compilation_cache() -> None:
    """The persistent compilation cache of the command line (``jaxlif._cache``) for a script run."""
    from jaxlif import _cache
    _cache.enable()


def script(main: Callable[[], Any]) -> None:
    """Run a script's ``main()``: compilation cache on; Ctrl-C -> one line, exit status 130.

    A ``main`` that returns a dict with ``ok`` False exits with status 1.
    """
    enable_compilation_cache()
    name = Path(sys.argv[0]).stem
    try:
        result = main()
    except KeyboardInterrupt:
        print(f"\n[{name}] interrupted: nothing was written, the output folder is as it was", file=sys.stderr,
              flush=True)
        sys.exit(EXIT_INTERRUPTED)
    ok = result.get("ok", True) if isinstance(result, dict) else True
    sys.exit(0 if ok else 1)


def run_main(run: Callable, doc: str, name: str, defaults: dict, quick: dict, extra: dict, checks: dict,
             argv=None) -> dict:
    """Parse and check the options, run ``run(cfg, log, files)`` into a staged folder, write
    ``<name>.json``, move the folder to ``--out``; returns the JSON-able summary."""
    parser = make_parser(doc, name, defaults, quick, extra)
    cfg = parse(parser, argv, defaults, quick, checks)
    final = cfg.out
    log, files = Progress(name), []
    with claim_out(parser, final), staged_folder(final) as stage:
        check_out(parser, final, cfg.overwrite)          # again, now that no other run can write there
        cfg.out = stage
        summary = run(cfg, log, files)
        summary.setdefault("runtime_s", log.elapsed)
        write_json(summary, stage, f"{name}.json")
        commit_folder(stage, final)
    cfg.out = final
    log(f"wrote {len(files)} figures and {name}.json to {final}")
    return to_jsonable(summary)


def experiment_key(seed: int, stream: int) -> jax.Array:
    """The root key of one experiment: ``jax.random.fold_in(jax.random.key(seed), stream)``."""
    return jax.random.fold_in(jax.random.key(int(seed)), int(stream))


class Progress:
    """Prints ``[name] message (t s)`` lines with the time since the experiment started."""

    def __init__(self, name: str):
        self.name = name
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{self.name}] {message} ({time.perf_counter() - self.t0:.1f} s)", flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def map_batched(fn: Callable, xs, batch_size: int):
    """``fn`` over the leading axis of the pytree ``xs``: ``jax.vmap`` within chunks of ``batch_size``, the
    chunks in sequence (``jax.lax.map``), so that recorded traces of a large batch never coexist in memory."""
    return jax.lax.map(lambda x: fn(*x), xs, batch_size=int(batch_size))


def save_figure(fig, out: Path, filename: str, files: list[str]) -> None:
    """Save ``fig`` as ``out/filename`` (PNG, 110 dpi), close it, and append the name to ``files``."""
    fig.savefig(Path(out) / filename, dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append(filename)


def to_jsonable(obj: Any) -> Any:
    """Convert JAX/NumPy arrays and scalars (nested in dicts/lists) to plain Python; NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        if arr.dtype == bool:
            return arr.tolist()
        if np.issubdtype(arr.dtype, np.integer):
            return arr.tolist()
        arr = arr.astype(float)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(float(arr))
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return to_jsonable(float(obj))
    return obj


def write_json(data: dict, out: Path, filename: str) -> Path:
    """Write ``data`` (after :func:`to_jsonable`) as indented JSON to ``out/filename``."""
    path = Path(out) / filename
    path.write_text(json.dumps(to_jsonable(data), indent=1) + "\n")
    return path


def mean_sem(x, axis=-1):
    """Mean and standard error of the mean over ``axis``, ignoring NaN (SEM with ddof=1; NaN if undefined)."""
    x = np.asarray(x, dtype=float)
    n = np.sum(np.isfinite(x), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=axis)
        sem = np.nanstd(x, axis=axis, ddof=1) / np.sqrt(n)
    return mean, sem


# ----------------------------------------------------------------------------------------------
# The shot-noise (Campbell) approximation of the free membrane potential (docs/conventions.md, 7)
# ----------------------------------------------------------------------------------------------


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` in ``path``
    (append the marked block when the markers are absent); the rest of the file is untouched.
    How every benchmark script records its own section of BENCHMARKS.md."""
    path = Path(path)
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def _explorer_params(gE_bar, gI_bar):
    import jaxlif as jl
    return jl.CondLIFParams(exc=jl.SynParams(gE_bar, 2.0, 0.0), inh=jl.SynParams(gI_bar, 5.0, -80.0))


def shot_noise_fmp(rate_E, rate_I, *, gE_bar=3.0, gI_bar=3.0):
    """:func:`jaxlif.analysis.fmp_shot_noise` for the explorer-1.2 neuron with these jumps [nS], as NumPy."""
    import jaxlif as jl
    with jax.enable_x64(True):
        mu, sd = jl.analysis.fmp_shot_noise(_explorer_params(gE_bar, gI_bar), np.asarray(rate_E, float),
                                            np.asarray(rate_I, float))
        return np.asarray(mu), np.asarray(sd)


def balanced_inh_rate(mu, rate_E, *, gE_bar=3.0, gI_bar=3.0):
    """:func:`jaxlif.analysis.balanced_inh_rate` for the explorer-1.2 neuron, as NumPy."""
    import jaxlif as jl
    with jax.enable_x64(True):
        return np.asarray(jl.analysis.balanced_inh_rate(_explorer_params(gE_bar, gI_bar), mu,
                                                        np.asarray(rate_E, float)))


def spike_marks(ax, t_spikes, V_th, top=10.0, **kw):
    """Draw each spike as a vertical line from ``V_th`` to ``top`` [mV] (never touches the voltage array)."""
    t_spikes = np.asarray(t_spikes)
    if t_spikes.size:
        ax.vlines(t_spikes, V_th, top, **kw)
