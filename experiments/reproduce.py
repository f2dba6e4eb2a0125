"""The main job: every figure and explorer of both tutorials, batched, in one run.

Runs, on embedded defaults (the parameter sets of docs/conventions.md, section 6) and one ``--seed``:

1. ``lif_part1``: the first tutorial's input current and membrane potential, with and without spikes;
2. ``free_membrane_potential``: section 1.2, FMP vs membrane potential with threshold;
3. ``ei_explorer``: explorer 1.2 as heatmaps over exc_rate x inh_rate, and the E/I-balance question;
4. ``stp_explorer``: STD and STF traces and g10/g1 ratio curves, regular and Poisson trains;
5. ``bonus_stp_lif``: STP-LIF vs static synapses against tau_ratio;
6. ``fit_trains``: real data, every plasticity model fitted to mossy fibre -> CA3 trains and compared;
7. ``train_network``: an E/I network with STP trained to a hidden network's rates, ISI CV and count
   correlation, surrogate gradients (Adam and Gauss-Newton) against gradient-free search on the same
   simulations; in the main job
   at the small size of ``MAIN_JOB_OPTIONS`` (the full 1000-neuron run is
   ``python experiments/train_network.py``, about half an hour on 2 cores);
8. ``fit_stp``: the fitting demonstration (``experiments/fit_stp.py``; reported as pending while it does
   not import).

Each experiment writes its PNGs and ``<name>.json`` into ``<out>/<name>/``; this script adds
``<out>/summary.json`` (every experiment's numbers, status and runtime) and ``<out>/report.md`` (the
conclusions, with the figures linked).  ``--quick`` runs everything at test size.  Every experiment
also runs alone: ``python experiments/<name>.py --help``.

Output: the whole run is written into a hidden staging folder next to ``--out`` and moved into place
when it ends, so ``--out`` never mixes two runs and an interrupted run (Ctrl-C: exit status 130)
leaves it as it was; a second run started into the same ``--out`` while one runs stops at once
(a lock file next to it).  An existing ``--out`` is replaced only with ``--overwrite``.  ``--only NAMES``
runs some experiments and *merges* them into an existing ``--out`` of an earlier run: their folders
are replaced, the other experiments' folders and entries are kept, and ``summary.json`` and
``report.md`` list the union (each experiment with the seed and size it was run with).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from experiments import _common as C  # noqa: E402

NAME = "reproduce"
EXPERIMENTS = ["lif_part1", "free_membrane_potential", "ei_explorer", "stp_explorer", "bonus_stp_lif",
               "fit_trains", "train_network"]
FIT = "fit_stp"
#: Options an experiment gets in the main job without ``--quick`` (sizes that keep the whole job within
#: about 5 minutes on 2 cores; the experiment's own defaults are its full run).
MAIN_JOB_OPTIONS = {"train_network": ["--n-E", "160", "--n-I", "40", "--p", "0.2", "--T", "300", "--steps", "6",
                                      "--ref-trials", "8", "--eval-trials", "4", "--corr-n", "100",
                                      "--closed-slopes", "0", "--cost-ratio", "20", "--gn-cost-ratio", "32"]}
TITLES = {
    "lif_part1": "LIF neuron part 1: sinusoidal input, membrane potential, spikes",
    "free_membrane_potential": "Section 1.2: free membrane potential vs membrane potential with threshold",
    "ei_explorer": "Explorer 1.2 as a grid, and the E/I balance question",
    "stp_explorer": "STD and STF explorers: traces and g10/g1 ratio curves",
    "bonus_stp_lif": "Bonus: STP-LIF against tau_ratio, vs static synapses",
    "fit_trains": "Real data: which plasticity model reproduces mossy fibre -> CA3 trains?",
    "train_network": "Training a recurrent E/I network with STP to a hidden network's statistics",
    FIT: "Fitting STP parameters to g10/g1 curves",
}
DEFAULTS = dict(seed=0, only=None)
QUICK: dict = {}
EXTRA = {"only": ("run only these experiments (comma-separated names; default all, fitting included); "
                  "into an existing --out of an earlier run they are merged",
                  lambda s: [x.strip() for x in s.split(",") if x.strip()])}


OUTPUTS = "summary.json, report.md and one folder of PNGs and <name>.json per experiment"


def _only(value, cfg):
    unknown = sorted(set(value) - set(EXPERIMENTS + [FIT]))
    if unknown:
        return f"unknown experiments {unknown}; choose from {EXPERIMENTS + [FIT]}"
    if not value:
        return "names no experiment"


CHECKS = {"only": _only}


def _experiment_args(cfg, out: Path, name: str | None = None) -> list[str]:
    size = ["--quick"] if cfg.quick else MAIN_JOB_OPTIONS.get(name, [])
    return ["--seed", str(cfg.seed), "--out", str(out)] + size


def run_experiment(name: str, cfg, out: Path) -> dict:
    """Run ``experiments.<name>.main`` into ``out/<name>``; never raises (errors are recorded)."""
    t0 = time.perf_counter()
    folder = out / name
    try:
        module = importlib.import_module(f"experiments.{name}")
        summary = module.main(_experiment_args(cfg, folder, name))
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


def report_text(results: dict, info: dict) -> str:
    """``report.md``: run information, each experiment's conclusion and its figures (relative links)."""
    lines = ["# jaxlif: the tutorials' figures and explorers, batched", "",
             f"Main job `python experiments/reproduce.py{' --quick' if info['quick'] else ''}`: seed "
             f"{info['seed']}, {info['runtime_s']:.0f} s on {info['device']} (jax {info['jax']}, "
             f"{info['cpu_count']} CPU cores). Numbers: `summary.json` and each folder's JSON.", ""]
    if info.get("kept_from_earlier_run"):
        lines += [f"This run (`--only`) redid {', '.join(info['ran'])}; kept from an earlier run: "
                  f"{', '.join(info['kept_from_earlier_run'])} (seed and size noted under each).", ""]
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
        size = " --quick" if res.get("quick") else ""
        lines += [f"_{res['runtime_s']:.1f} s (seed {res.get('seed', info['seed'])}{size}); numbers in `{name}/`._", ""]
    return "\n".join(lines)


def _rebase(obj, old: str, new: str):
    """Replace the staging folder's path by the final one in every string of ``obj``."""
    if isinstance(obj, dict):
        return {k: _rebase(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebase(v, old, new) for v in obj]
    return obj.replace(old, new) if isinstance(obj, str) else obj


def _previous(out: Path) -> dict:
    """The experiments recorded in ``out/summary.json`` whose folders still exist ({} if none)."""
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {name: res for name, res in (old.get("experiments") or {}).items()
            if name in TITLES and isinstance(res, dict) and (out / name).is_dir()}


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> dict:
    parser = C.make_parser(__doc__, NAME, DEFAULTS, QUICK, EXTRA, out_default="results", outputs=OUTPUTS)
    cfg = C.parse(parser, argv, DEFAULTS, QUICK, CHECKS, check_output=False)
    with C.claim_out(parser, cfg.out):       # two runs into one folder: the second stops here
        return _run(parser, cfg)


def _run(parser, cfg) -> dict:
    out = cfg.out
    merge = bool(cfg.only) and not cfg.overwrite and (out / "summary.json").is_file()
    C.check_out(parser, out, cfg.overwrite, merge_ok=merge)
    wanted = cfg.only or EXPERIMENTS + [FIT]
    names = [n for n in EXPERIMENTS + [FIT] if n in wanted]
    t0 = time.perf_counter()
    results = {}
    with C.staged_folder(out) as stage:
        for i, name in enumerate(names, 1):
            print(f"[{NAME}] ({i}/{len(names)}) {name} ...", flush=True)
            res = run_fit(cfg, stage) if name == FIT else run_experiment(name, cfg, stage)
            res = _rebase(C.to_jsonable(res), str(stage), str(out))
            res.update(seed=cfg.seed, quick=cfg.quick,
                       finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            results[name] = res
            print(f"[{NAME}] ({i}/{len(names)}) {name}: {res['status']} in {res['runtime_s']:.1f} s "
                  f"({len(res['figures'])} figures; total {time.perf_counter() - t0:.1f} s)", flush=True)
        kept = {k: v for k, v in _previous(out).items() if k not in results} if merge else {}
        merged = {n: (results[n] if n in results else kept[n]) for n in EXPERIMENTS + [FIT]
                  if n in results or n in kept}
        info = dict(seed=cfg.seed, quick=cfg.quick, runtime_s=time.perf_counter() - t0, jax=jax.__version__,
                    device=f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()})",
                    cpu_count=len(os.sched_getaffinity(0)), python=platform.python_version(),
                    ran=names, kept_from_earlier_run=sorted(kept))
        ok = all(r["status"] != "error" for r in merged.values())
        if FIT in results and results[FIT]["status"] == "pending":
            print(f"[{NAME}] fitting pending (experiments/fit_stp.py not importable yet)", flush=True)
        summary = dict(name=NAME, ok=ok, units="ms, mV, nS, pA, Hz", info=info, experiments=merged)
        if merge:       # replace only this run's experiment folders, then the two index files
            for name in names:
                if (stage / name).exists():
                    C.commit_folder(stage / name, out / name)
                elif (out / name).exists():      # failed now: drop the earlier figures, the entry says why
                    shutil.rmtree(out / name)
            _write_text(out / "summary.json", json.dumps(C.to_jsonable(summary), indent=1) + "\n")
            _write_text(out / "report.md", report_text(merged, info))
        else:
            C.write_json(summary, stage, "summary.json")
            (stage / "report.md").write_text(report_text(merged, info))
            C.commit_folder(stage, out)
    n_fig = sum(len(r["figures"]) for r in results.values())
    print(f"[{NAME}] {'done' if ok else 'FAILED'}: {n_fig} figures, summary.json and report.md in {out} "
          f"({info['runtime_s']:.1f} s{'; merged with ' + ', '.join(sorted(kept)) if kept else ''})", flush=True)
    return C.to_jsonable(summary)


if __name__ == "__main__":
    C.script(main)
