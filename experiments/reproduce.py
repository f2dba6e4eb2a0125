"""The main job: every figure and explorer of both tutorials, batched, in one run.

Runs, on embedded defaults (SPEC parameter sets) and one ``--seed``:

1. ``lif_part1``: the first tutorial's input current and membrane potential, with and without spikes;
2. ``free_membrane_potential``: section 1.2, FMP vs membrane potential with threshold;
3. ``ei_explorer``: explorer 1.2 as heatmaps over exc_rate x inh_rate, and the E/I-balance question;
4. ``stp_explorer``: STD and STF traces and g10/g1 ratio curves, regular and Poisson trains;
5. ``bonus_stp_lif``: STP-LIF vs static synapses against tau_ratio;
6. ``fit_stp``: the fitting demonstration (``experiments/fit_stp.py``; reported as pending while it does
   not import).

Each experiment writes its PNGs and ``<name>.json`` into ``<out>/<name>/``; this script adds
``<out>/summary.json`` (every experiment's numbers, status and runtime) and ``<out>/report.md`` (the
conclusions, with the figures linked).  ``--quick`` runs everything at test size.  Every experiment
also runs alone: ``python experiments/<name>.py --help``.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from experiments import _common as C  # noqa: E402

NAME = "reproduce"
EXPERIMENTS = ["lif_part1", "free_membrane_potential", "ei_explorer", "stp_explorer", "bonus_stp_lif"]
FIT = "fit_stp"
TITLES = {
    "lif_part1": "LIF neuron part 1: sinusoidal input, membrane potential, spikes",
    "free_membrane_potential": "Section 1.2: free membrane potential vs membrane potential with threshold",
    "ei_explorer": "Explorer 1.2 as a grid, and the E/I balance question",
    "stp_explorer": "STD and STF explorers: traces and g10/g1 ratio curves",
    "bonus_stp_lif": "Bonus: STP-LIF against tau_ratio, vs static synapses",
    FIT: "Fitting STP parameters to g10/g1 curves",
}
DEFAULTS = dict(seed=0, only=None)
QUICK: dict = {}
EXTRA = {"only": ("run only these experiments (comma-separated names; default all, fitting included)",
                  lambda s: [x.strip() for x in s.split(",") if x.strip()])}


def _experiment_args(cfg, out: Path) -> list[str]:
    return ["--seed", str(cfg.seed), "--out", str(out)] + (["--quick"] if cfg.quick else [])


def run_experiment(name: str, cfg, out: Path) -> dict:
    """Run ``experiments.<name>.main`` into ``out/<name>``; never raises (errors are recorded)."""
    t0 = time.perf_counter()
    folder = out / name
    try:
        module = importlib.import_module(f"experiments.{name}")
        summary = module.main(_experiment_args(cfg, folder))
        status, error = "ok", None
    except (Exception, SystemExit) as err:  # keep going: one broken experiment must not hide the others
        traceback.print_exc()
        summary, status, error = None, "error", f"{type(err).__name__}: {err}"
    return dict(status=status, error=error, runtime_s=time.perf_counter() - t0,
                figures=_figures(out, folder, summary), summary=summary)


def _figures(out: Path, folder: Path, summary) -> list[str]:
    """PNGs under ``folder`` relative to ``out``: in the experiment's own order, then any others."""
    found = sorted(str(p.relative_to(out)) for p in folder.rglob("*.png")) if folder.exists() else []
    listed = [str((folder / f).relative_to(out)) for f in (summary or {}).get("figures", [])
              if isinstance(f, str)]
    return [f for f in listed if f in found] + [f for f in found if f not in listed]


def load_fit_module():
    """``experiments.fit_stp``, or ``None`` with the reason while it (or ``jaxlif.fitting``) does not import."""
    exp_dir = str(Path(__file__).resolve().parent)
    if exp_dir not in sys.path:      # let fit_stp use either "from experiments import _common" or "import _common"
        sys.path.append(exp_dir)
    try:
        return importlib.import_module(f"experiments.{FIT}"), None
    except ImportError as err:
        return None, f"{type(err).__name__}: {err}"


def run_fit(cfg, out: Path, loader=load_fit_module) -> dict:
    """The fitting demonstration via ``experiments/fit_stp.py`` (``main(argv)`` with --quick --seed --out)."""
    t0 = time.perf_counter()
    module, reason = loader()
    if module is None:
        print(f"[{NAME}] fitting pending: experiments/fit_stp.py does not import yet ({reason})", flush=True)
        return dict(status="pending", error=reason, runtime_s=time.perf_counter() - t0, figures=[],
                    summary=None)
    folder = out / FIT
    folder.mkdir(parents=True, exist_ok=True)
    try:
        summary = module.main(_experiment_args(cfg, folder))
        status, error = "ok", None
    except (Exception, SystemExit) as err:
        traceback.print_exc()
        summary, status, error = None, "error", f"{type(err).__name__}: {err}"
    summary = C.to_jsonable(summary) if isinstance(summary, dict) else None
    return dict(status=status, error=error, runtime_s=time.perf_counter() - t0,
                figures=_figures(out, folder, summary), summary=summary)


def write_report(out: Path, results: dict, info: dict) -> Path:
    """``report.md``: run information, each experiment's conclusion and its figures (relative links)."""
    lines = ["# jaxlif: the tutorials' figures and explorers, batched", "",
             f"Main job `python experiments/reproduce.py{' --quick' if info['quick'] else ''}`: seed "
             f"{info['seed']}, {info['runtime_s']:.0f} s on {info['device']} (jax {info['jax']}, "
             f"{info['cpu_count']} CPU cores). Numbers: `summary.json` and each folder's JSON.", ""]
    for name, res in results.items():
        lines += [f"## {TITLES.get(name, name)}", ""]
        if res["status"] == "pending":
            lines += [f"**Fitting pending**: `experiments/fit_stp.py` does not import yet ({res['error']}).", ""]
            continue
        if res["status"] == "error":
            lines += [f"**Failed**: {res['error']}", ""]
        summary = res.get("summary") or {}
        if summary.get("conclusion"):
            lines += [summary["conclusion"], ""]
        lines += [f"![{Path(f).stem}]({f})" for f in res["figures"]] + [""]
        lines += [f"_{res['runtime_s']:.1f} s; numbers in `{name}/`._", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> dict:
    cfg = C.parse(C.make_parser(__doc__, NAME, DEFAULTS, QUICK, EXTRA, out_default="results"),
                  argv, DEFAULTS, QUICK)
    out = cfg.out
    wanted = cfg.only or EXPERIMENTS + [FIT]
    unknown = sorted(set(wanted) - set(EXPERIMENTS + [FIT]))
    if unknown:
        raise ValueError(f"--only: unknown experiments {unknown}; choose from {EXPERIMENTS + [FIT]}")
    t0 = time.perf_counter()
    results = {}
    names = [n for n in EXPERIMENTS + [FIT] if n in wanted]
    for i, name in enumerate(names, 1):
        print(f"[{NAME}] ({i}/{len(names)}) {name} ...", flush=True)
        results[name] = run_fit(cfg, out) if name == FIT else run_experiment(name, cfg, out)
        res = results[name]
        print(f"[{NAME}] ({i}/{len(names)}) {name}: {res['status']} in {res['runtime_s']:.1f} s "
              f"({len(res['figures'])} figures; total {time.perf_counter() - t0:.1f} s)", flush=True)
    info = dict(seed=cfg.seed, quick=cfg.quick, runtime_s=time.perf_counter() - t0, jax=jax.__version__,
                device=f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()})",
                cpu_count=len(os.sched_getaffinity(0)), python=platform.python_version())
    ok = all(r["status"] != "error" for r in results.values())
    if FIT in results and results[FIT]["status"] == "pending":
        print(f"[{NAME}] fitting pending (experiments/fit_stp.py not importable yet)", flush=True)
    summary = dict(name=NAME, ok=ok, info=info, experiments=results)
    C.write_json(summary, out, "summary.json")
    write_report(out, results, info)
    print(f"[{NAME}] {'done' if ok else 'FAILED'}: {sum(len(r['figures']) for r in results.values())} figures, "
          f"summary.json and report.md in {out} ({info['runtime_s']:.1f} s)", flush=True)
    return C.to_jsonable(summary)


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
