"""Shared plumbing for the experiment scripts: command line, keys, progress, figures, JSON.

Every experiment in this folder follows one pattern (STYLE.md "Experiments/CLI")::

    DEFAULTS = dict(T=1000.0, dt=0.1, trials=8, seed=0, ...)   # SPEC parameter sets
    QUICK = dict(T=200.0, trials=2, ...)                        # the --quick size used by the tests

    def main(argv=None) -> dict:
        cfg = parse(make_parser(__doc__, NAME, DEFAULTS, QUICK, extra), argv, DEFAULTS, QUICK)
        ...compute in one vmapped batch..., save figures and NAME.json into cfg.out
        return summary

Options left unset on the command line take the ``--quick`` value when ``--quick`` is given
(and the key is in ``QUICK``), otherwise the embedded default; an explicit option always wins.

Randomness: ``experiment_key(seed, stream)`` is ``fold_in(key(seed), stream)``, with a fixed
stream number per experiment, so that the experiments of one ``--seed`` never share random
numbers and each one gives the same result alone or inside ``reproduce.py``.

This module is also the scripts' import bootstrap: importing it puts the repository root on
``sys.path`` so that ``python experiments/<name>.py`` finds ``jaxlif`` without installation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

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
    "write_json", "finish", "to_jsonable", "mean_sem", "map_batched", "shot_noise_fmp", "balanced_inh_rate", "spike_marks",
]

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
        parts = [float(x) for x in text.split(":")]
        if len(parts) != 3 or parts[2] <= 0:
            raise argparse.ArgumentTypeError(f"range {text!r} must be start:stop:step with step > 0")
        start, stop, step = parts
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        return [round(start + i * step, 12) for i in range(max(n, 0))]
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from err


def make_parser(doc: str, name: str, defaults: dict, quick: dict,
                extra: dict[str, tuple[str, Callable]] | None = None,
                out_default: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with the standard options plus ``extra``.

    Args:
        doc: the script's module docstring (first paragraph becomes the description).
        name: the experiment's name (default output folder ``results/<name>``).
        defaults: embedded defaults; a standard option (T, dt, trials, seed) is added only if
            its key is present.  ``out`` defaults to ``results/<name>``.
        quick: smaller values used with ``--quick``.
        extra: ``{key: (help, type)}`` for experiment-specific options (``--key-with-dashes``).
        out_default: default output folder (``results/<name>`` if not given).
    """
    out_default = out_default or f"results/{name}"
    parser = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py", description=doc.strip().split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options not given take the embedded default, or the --quick value with --quick.")
    options = {k: v for k, v in _STANDARD_HELP.items() if k in defaults}
    options.update(extra or {})
    for key, (text, typ) in options.items():
        shown = ",".join(f"{x:g}" for x in defaults[key]) if isinstance(defaults[key], list) else defaults[key]
        text = f"{text} (default {shown}"
        if key in quick:
            q = quick[key]
            text += "; --quick: " + (",".join(f"{x:g}" for x in q) if isinstance(q, list) else str(q))
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None,
                            help=text + ")")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder for PNGs and {name}.json (default {out_default})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for tests and smoke runs (a few seconds after compilation)")
    parser.set_defaults(_name=name, _out_default=out_default)
    return parser


def parse(parser: argparse.ArgumentParser, argv, defaults: dict, quick: dict) -> argparse.Namespace:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``), fill unset options, create the output folder, print the config."""
    cfg = parser.parse_args(argv)
    for key, value in defaults.items():
        if getattr(cfg, key, None) is None:
            setattr(cfg, key, quick[key] if (cfg.quick and key in quick) else value)
    cfg.out = Path(cfg.out) if cfg.out is not None else Path(cfg._out_default)
    cfg.out.mkdir(parents=True, exist_ok=True)
    shown = {k: _short(v) for k, v in vars(cfg).items() if not k.startswith("_")}
    print(f"[{cfg._name}] config: {json.dumps(shown)}", flush=True)
    return cfg


def _short(value):
    """A printable form of a config value (long lists abbreviated)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list) and len(value) > 6:
        return f"[{value[0]:g}, {value[1]:g}, ..., {value[-1]:g}] ({len(value)} values)"
    return value


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


def finish(name: str, summary: dict, out: Path, log, n_figures: int) -> dict:
    """Close an experiment: write ``out/<name>.json``, log what was written, return the JSON-able summary."""
    write_json(summary, out, f"{name}.json")
    log(f"wrote {n_figures} figures to {out}")
    return to_jsonable(summary)


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
# The shot-noise (Campbell) approximation of the free membrane potential (SPEC "Closed forms")
# ----------------------------------------------------------------------------------------------


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
