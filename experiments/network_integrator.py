"""Networks under ``integrator="exp_euler"``: rate against dt, against NEST 3.10, and the speed cost (docs/networks.md).

The network is the high-conductance E/I network of issue 21 ("Fidelity"): the benchmark network of
``benchmarks/bench_network.py`` (3200 E + 800 I of the tutorials' neuron, p = 0.1, weights E->E 0.25,
E->I 0.25, I->E 1.5, I->I 1.5 nS, delay 1.5 ms, 100 Poisson trains x 10 Hz x 1 nS of drive per neuron)
with **static** E->E synapses: it fires at about 67 Hz with a mean total conductance near 10 g_L, so an
effective membrane time constant near 1 ms.  Smaller networks (``--n-E``, ``--n-I``) get weights scaled
by ``400 / ((n_E + n_I) p)`` (the same mean input).  The delay stays 1.5 ms at every ``dt``
(``round(1.5 / dt)`` steps).  Rates are over the whole run (``T`` ms from rest), mean over neurons, and
mean +- standard error over ``--keys`` drive keys (one connectivity, ``--seed``)::

    python experiments/network_integrator.py --out /tmp/ni                  # the docs' numbers (long)
    python experiments/network_integrator.py --quick --out /tmp/ni_quick    # a minute, no NEST

Parts (``--parts``):

- ``rates``: jaxlif with ``euler`` and ``exp_euler`` at each ``--dts`` (float32).
- ``nest``: NEST ``iaf_cond_exp`` on the same synapses (``experiments/nest_check.py network``, in NEST's
  own environment: ``$JAXLIF_NEST_PYTHON`` or ``.venv-nest``), at each ``--nest-resolutions``, one
  ``poisson_generator`` at 1000 Hz x 1 nS (independent trains per target), ``--keys`` NEST seeds.
- ``order``: convergence over dt on the same inputs, in float64: ``--order-n-E`` + ``--order-n-I`` neurons
  (weights scaled as above) without the Poisson drive, given instead as conductance jumps on the 0.1 ms
  grid (Binomial(100, 10 Hz x 0.1 ms) x 1 nS per neuron and step, none at t = 0, NumPy seed ``--seed``),
  at the same times on every finer grid; recurrent weights times ``--order-coupling``; ``--order-T`` ms;
  reference ``exp_euler`` at ``--order-ref`` ms.  Per run: the relative difference of the total spike
  count from the reference's, and for every reference spike the distance to the nearest spike of the
  same neuron (mean over those within 1 ms; fraction within 0.05 ms); orders are least-squares slopes of
  log(error) on log(dt).
- ``speed``: ``euler`` against ``exp_euler`` at dt = 0.1 ms, ``record=False``, interleaved, the fastest
  of ``--repeats`` (compilation excluded).

Writes ``network_integrator.json`` and ``table.md`` into ``--out``; with ``--docs PATH`` the table also
replaces the section between ``<!-- begin:network_integrator -->`` and ``<!-- end:network_integrator -->``
of that file; with ``--bench BENCHMARKS.md`` the speed goes into that file's section of the same name.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from jaxlif import network as nw  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- begin:network_integrator -->", "<!-- end:network_integrator -->"
WEIGHTS_4000 = {"E->E": 0.25, "E->I": 0.25, "I->E": 1.5, "I->I": 1.5}      # nS, for p = 0.1 and 4000 neurons
DELAY_MS = 1.5
DRIVE = dict(drive_rate=10.0, drive_n=100, drive_weight=1.0)
DEFAULTS = dict(n_E=3200, n_I=800, p=0.1, T=1000.0, keys=3, seed=0, dts=(0.1, 0.05, 0.025, 0.0125),
                nest_resolutions=(0.1, 0.01), repeats=5)
QUICK = dict(n_E=320, n_I=80, T=200.0, keys=2, dts=(0.1, 0.05), nest_resolutions=(), repeats=2)


def weights(n_E: int, n_I: int, p: float) -> dict:
    """Weights [nS] scaled with the number of inputs (``p n``): the same mean input as at 4000 neurons."""
    scale = 4000 * 0.1 / ((n_E + n_I) * p)
    return {k: w * scale for k, w in WEIGHTS_4000.items()}


def build(n_E: int, n_I: int, p: float, dt: float, seed: int = 0, coupling: float = 1.0) -> nw.Network:
    """The static-E->E network with the delay of ``DELAY_MS`` in steps of ``dt`` (same synapses at every dt);
    ``coupling`` scales every recurrent weight."""
    w = {k: coupling * v for k, v in weights(n_E, n_I, p).items()}
    return nw.ei_network(jax.random.key(seed), n_E=n_E, n_I=n_I, p=p, weights=w,
                         delay=int(round(DELAY_MS / dt)), stp=None, **DRIVE)


def rates(net: nw.Network, dt: float, T: float, integrator: str, keys) -> dict:
    """Mean rate [Hz] of E and I for each drive key (``record=False``)."""
    out = {"E": [], "I": []}
    for k in keys:
        res = nw.simulate_network(jax.random.key(k), net, T=T, dt=dt, record=False, integrator=integrator)
        for name in out:
            s = np.asarray(res.spikes[name])
            out[name].append(float(s.sum()) / s.shape[0] / (T / 1000.0))
    return out


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def nest_spec(net: nw.Network, resolution: float, T: float, seed: int) -> dict:
    """``nest_check.py network`` input for ``net`` (one neuron parameter set; inhibitory weights negative)."""
    offsets = net.offsets
    pre, post, weight = [], [], []
    for proj in net.projections:
        a, b, w, _ = proj.edges()
        pre.append(a + offsets[proj.pre])
        post.append(b + offsets[proj.post])
        weight.append(np.asarray(w, float) * (1.0 if proj.receptor == "exc" else -1.0))
    pop = net.populations[0]
    nrn, exc, inh, drive = pop.neuron, pop.exc, pop.inh, pop.drive
    return dict(pre=np.concatenate(pre), post=np.concatenate(post), weight=np.concatenate(weight), n=net.size,
                delay=DELAY_MS, drive_rate=drive.rate * drive.n, drive_weight=drive.weight, seed=seed,
                resolution=resolution, T=T, C_m=nrn.g_L * nrn.tau_m, g_L=nrn.g_L, E_L=nrn.E_L, V_th=nrn.V_th,
                V_reset=nrn.V_reset, V_init=nrn.V_init, t_ref=nrn.t_ref, E_ex=exc.E_rev, E_in=inh.E_rev,
                tau_syn_ex=exc.tau_syn, tau_syn_in=inh.tau_syn)


def nest_rates(net: nw.Network, resolution: float, T: float, keys, n_E: int) -> dict:
    from experiments.nest_compare import run_nest
    out = {"E": [], "I": [], "seconds": []}
    for k in keys:
        res = run_nest("network", nest_spec(net, resolution, T, 1 + k))
        n = np.asarray(res["n_spikes"], float)
        out["E"].append(float(n[:n_E].mean()) / (T / 1000.0))
        out["I"].append(float(n[n_E:].mean()) / (T / 1000.0))
        out["seconds"].append(res["seconds"])
        out["nest_version"] = res["nest_version"]
    return out


def _without_drive(net: nw.Network) -> nw.Network:
    import dataclasses
    return dataclasses.replace(net, populations=tuple(dataclasses.replace(p, drive=None) for p in net.populations))


def _spike_times(res, dt: float) -> list:
    out = []
    for name in ("E", "I"):
        s = np.asarray(res.spikes[name])
        off = np.zeros(s.shape) if res.spike_offset is None else np.asarray(res.spike_offset[name], float)
        out += [np.flatnonzero(row) * dt + o[row] for row, o in zip(s, off)]
    return out


def _time_errors(ref: list, run: list) -> tuple[float, float]:
    """Mean distance from each reference spike to the nearest spike of the run (within 1 ms) and the
    fraction of reference spikes within 0.05 ms."""
    d = []
    for a, b in zip(ref, run):
        if a.size == 0:
            continue
        if b.size == 0:
            d.extend([np.inf] * a.size)
            continue
        j = np.clip(np.searchsorted(b, a), 1, max(b.size - 1, 1))
        near = np.minimum(np.abs(a - b[np.maximum(j - 1, 0)]), np.abs(a - b[np.minimum(j, b.size - 1)]))
        d.extend(near)
    d = np.asarray(d)
    return float(d[d < 1.0].mean()), float(np.mean(d <= 0.05))


def _slope(dts, errs) -> float:
    x, y = np.log(np.asarray(dts)), np.log(np.maximum(np.asarray(errs, float), 1e-300))
    ok = np.asarray(errs) > 0
    return float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= 2 else float("nan")


def order(n_E: int, n_I: int, T: float, dts, ref_dt: float, seed: int, coupling: float = 1.0) -> dict:
    """Convergence on the same inputs (module docstring, part ``order``), float64."""
    coarse = 0.1
    steps = int(round(T / coarse))
    rng = np.random.default_rng(seed)
    counts = rng.binomial(DRIVE["drive_n"], DRIVE["drive_rate"] * coarse / 1000.0, (n_E + n_I, steps))
    counts[:, 0] = 0            # index 0 is seen by exp_euler only: leave it empty, the same input for both
    out = {"runs": {}, "ref_dt": ref_dt, "coupling": coupling}
    with jax.enable_x64(True):
        def run(dt, ig):
            r = int(round(coarse / dt))
            g = np.zeros((n_E + n_I, steps * r))
            g[:, ::r] = counts * DRIVE["drive_weight"]
            net = _without_drive(build(n_E, n_I, 0.1, dt, coupling=coupling))
            inputs = {"E": nw.NetworkInput(g_E=g[:n_E]), "I": nw.NetworkInput(g_E=g[n_E:])}
            res = nw.simulate_network(None, net, T=T, dt=dt, inputs=inputs, record=False, integrator=ig)
            return _spike_times(res, dt)

        ref = run(ref_dt, "exp_euler")
        n_ref = sum(len(t) for t in ref)
        out["ref_rate_hz"] = n_ref / (n_E + n_I) / (T / 1000.0)
        for ig in ("euler", "exp_euler"):
            rows = []
            for dt in dts:
                times = run(dt, ig)
                mean_err, within = _time_errors(ref, times)
                rows.append(dict(dt=dt, rate_rel=float(sum(len(t) for t in times) / n_ref - 1.0), mean_ms=mean_err,
                                 within_005=within))
                print(f"order {ig} dt {dt}: {rows[-1]}", flush=True)
            out["runs"][ig] = rows
    for ig, rows in out["runs"].items():
        out[f"order_{ig}"] = {k: _slope([r["dt"] for r in rows], [abs(r[k]) for r in rows])
                              for k in ("rate_rel", "mean_ms")}
    return out


def speed(net: nw.Network, T: float, repeats: int) -> dict:
    """Interleaved wall times [s] of euler and exp_euler at dt = 0.1 (record=False, compilation excluded)."""
    times = {"euler": [], "exp_euler": []}
    run = {ig: (lambda k, ig=ig: nw.simulate_network(jax.random.key(k), net, T=T, dt=0.1, record=False,
                                                      integrator=ig)) for ig in times}
    for ig in times:
        jax.block_until_ready(run[ig](100))
    for i in range(repeats):
        for ig in times:
            t0 = time.perf_counter()
            jax.block_until_ready(run[ig](101 + i))
            times[ig].append(time.perf_counter() - t0)
    return {ig: {"best_s": min(t), "median_s": statistics.median(t), "all_s": t} for ig, t in times.items()}


def table(report: dict) -> str:
    cfg = report["config"]
    lines = [f"Network: {cfg['n_E']} E + {cfg['n_I']} I, p = {cfg['p']}, weights {report['weights']} nS, "
             f"static E->E, delay {DELAY_MS} ms, drive 100 x 10 Hz x 1 nS; rates over T = {cfg['T']:g} ms from rest, "
             f"mean +- SE over n drive keys (jaxlif: float32) or NEST seeds.", "",
             "| simulator | integrator | dt / resolution [ms] | n | E rate [Hz] | I rate [Hz] |",
             "|---|---|---|---|---|---|"]
    for row in report["rates"]:
        (mE, sE), (mI, sI) = _mean_se(row["E"]), _mean_se(row["I"])
        lines.append(f"| {row['simulator']} | {row['integrator']} | {row['dt']:g} | {len(row['E'])} | "
                     f"{mE:.2f} ± {sE:.2f} | "
                     f"{mI:.2f} ± {sI:.2f} |")
    for o in report.get("orders", []):
        c = o["config"]
        dts = [r["dt"] for r in o["runs"]["exp_euler"]]
        lines += ["", f"Convergence on the same inputs ({c['n_E']} E + {c['n_I']} I, recurrent weights x "
                  f"{o.get('coupling', 1.0):g}, the drive given as "
                  f"conductance jumps on the 0.1 ms grid, T = {c['T']:g} ms, float64; reference exp_euler at "
                  f"dt = {o['ref_dt']:g} ms, {o['ref_rate_hz']:.2f} Hz):", "",
                  "| integrator | error | " + " | ".join(f"dt {d:g}" for d in dts) + " | order |",
                  "|---|---|" + "---|" * (len(dts) + 1)]
        for ig, rows in o["runs"].items():
            lines.append(f"| {ig} | rate (relative) | " + " | ".join(f"{r['rate_rel']:+.2e}" for r in rows)
                         + f" | {o['order_' + ig]['rate_rel']:.2f} |")
            lines.append(f"| {ig} | mean spike-time error [ms] | " + " | ".join(f"{r['mean_ms']:.2e}" for r in rows)
                         + f" | {o['order_' + ig]['mean_ms']:.2f} |")
            lines.append(f"| {ig} | spikes within 0.05 ms | " + " | ".join(f"{100 * r['within_005']:.1f} %"
                                                                           for r in rows) + " | |")
    if report.get("speed"):
        sp = report["speed"]
        e, x = sp["euler"]["best_s"], sp["exp_euler"]["best_s"]
        lines += ["", f"Speed (dt = 0.1 ms, T = {cfg['speed_T']:g} ms, record=False, float32, interleaved, best of "
                  f"{cfg['repeats']}, {report['host']}): euler {e:.2f} s, exp_euler {x:.2f} s, ratio {x / e:.2f}."]
    return "\n".join(lines) + "\n"


def write_docs(path: Path, section: str, name: str = "network_integrator") -> None:
    text = path.read_text()
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    a, b = text.index(begin) + len(begin), text.index(end)
    path.write_text(text[:a] + "\n" + section + text[b:])


def speed_section(report: dict) -> str:
    """The BENCHMARKS.md lines: the network's time per run under each integrator."""
    cfg, sp = report["config"], report["speed"]
    e, x = sp["euler"], sp["exp_euler"]
    return (f"Network: {cfg['n_E']} E + {cfg['n_I']} I (the high-conductance network of docs/networks.md section 3, "
            f"static E->E, about 67 Hz), T = {cfg['speed_T']:g} ms, dt = 0.1 ms, `record=False`, float32, "
            f"{report['host']}; the two integrators alternated, {cfg['repeats']} runs each (compilation "
            f"excluded), on a shared host:\n\n"
            "| integrator | best [s] | median [s] |\n|---|---|---|\n"
            f"| euler | {e['best_s']:.2f} | {e['median_s']:.2f} |\n"
            f"| exp_euler | {x['best_s']:.2f} | {x['median_s']:.2f} |\n\n"
            f"Ratio exp_euler / euler: {x['best_s'] / e['best_s']:.2f} (best), "
            f"{x['median_s'] / e['median_s']:.2f} (median).\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="rates,nest,speed")
    parser.add_argument("--n-E", type=int)
    parser.add_argument("--n-I", type=int)
    parser.add_argument("--T", type=float)
    parser.add_argument("--keys", type=int)
    parser.add_argument("--dts", type=lambda s: tuple(float(x) for x in s.split(",")))
    parser.add_argument("--integrators", default="euler,exp_euler")
    parser.add_argument("--exp-only-dts", type=lambda s: tuple(float(x) for x in s.split(",") if x), default=(),
                        help="further dts run with exp_euler only (the fine references)")
    parser.add_argument("--nest-resolutions", type=lambda s: tuple(float(x) for x in s.split(",") if x))
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--speed-T", type=float, default=1000.0)
    parser.add_argument("--order-n-E", type=int, default=800)
    parser.add_argument("--order-n-I", type=int, default=200)
    parser.add_argument("--order-T", type=float, default=100.0)
    parser.add_argument("--order-dts", type=lambda s: tuple(float(x) for x in s.split(",")),
                        default=(0.1, 0.05, 0.025, 0.0125))
    parser.add_argument("--order-ref", type=float, default=0.003125)
    parser.add_argument("--order-coupling", type=float, default=1.0, help="scale of the recurrent weights")
    parser.add_argument("--merge", help="comma-separated network_integrator.json files of earlier runs: their "
                        "rates, order and speed are added to this report (to render the tables of parts run apart)")
    parser.add_argument("--docs")
    parser.add_argument("--bench", help="BENCHMARKS.md: write the speed into its network_integrator section")
    args = parser.parse_args(argv)
    cfg = dict(DEFAULTS, **(QUICK if args.quick else {}))
    for name in ("n_E", "n_I", "T", "keys", "dts", "nest_resolutions", "repeats"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    cfg.update(speed_T=args.speed_T, order_n_E=args.order_n_E, order_n_I=args.order_n_I, order_T=args.order_T)
    parts = set(args.parts.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(range(cfg["keys"]))
    report = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
              "weights": weights(cfg["n_E"], cfg["n_I"], cfg["p"]), "rates": [], "orders": [],
              "host": f"{jax.devices()[0].platform.upper()}, jax {jax.__version__}"}
    for path in (args.merge.split(",") if args.merge else []):
        old = json.loads(Path(path).read_text())
        report["rates"] += old.get("rates", [])
        report["orders"] += old.get("orders", [])
        if "speed" in old:
            report["speed"] = old["speed"]
            for k in ("speed_T", "repeats"):
                cfg[k] = report["config"][k] = old["config"][k]
    if "rates" in parts:
        plan = [(dt, args.integrators.split(",")) for dt in cfg["dts"]] + [(dt, ["exp_euler"])
                                                                            for dt in args.exp_only_dts]
        for dt, integrators in plan:
            net = build(cfg["n_E"], cfg["n_I"], cfg["p"], dt, cfg["seed"])
            for ig in integrators:
                t0 = time.perf_counter()
                r = rates(net, dt, cfg["T"], ig, keys)
                report["rates"].append(dict(simulator="jaxlif", integrator=ig, dt=dt, seconds=time.perf_counter() - t0,
                                            **r))
                print(f"jaxlif {ig} dt {dt}: E {_mean_se(r['E'])} I {_mean_se(r['I'])}", flush=True)
                (out / "network_integrator.json").write_text(json.dumps(report, indent=1))
    if "nest" in parts:
        for res in cfg["nest_resolutions"]:
            net = build(cfg["n_E"], cfg["n_I"], cfg["p"], 0.1, cfg["seed"])
            r = nest_rates(net, res, cfg["T"], keys, cfg["n_E"])
            report["rates"].append(dict(simulator="NEST " + r.pop("nest_version", ""),
                                        integrator="iaf_cond_exp (RKF45)", dt=res, **r))
            print(f"NEST res {res}: E {_mean_se(r['E'])} I {_mean_se(r['I'])} ({r['seconds']} s)", flush=True)
            (out / "network_integrator.json").write_text(json.dumps(report, indent=1))
    if "order" in parts:
        o = order(args.order_n_E, args.order_n_I, args.order_T, args.order_dts, args.order_ref, cfg["seed"],
                  args.order_coupling)
        o["config"] = dict(n_E=args.order_n_E, n_I=args.order_n_I, T=args.order_T)
        report["orders"].append(o)
        (out / "network_integrator.json").write_text(json.dumps(report, indent=1))
    if "speed" in parts:
        net = build(cfg["n_E"], cfg["n_I"], cfg["p"], 0.1, cfg["seed"])
        report["speed"] = speed(net, cfg["speed_T"], cfg["repeats"])
        print("speed", {k: v["best_s"] for k, v in report["speed"].items()}, flush=True)
    (out / "network_integrator.json").write_text(json.dumps(report, indent=1))
    section = table(report)
    (out / "table.md").write_text(section)
    if args.docs:
        write_docs(Path(args.docs), section)
    if args.bench and report.get("speed"):
        write_docs(Path(args.bench), speed_section(report))
    print(section)
    return report


if __name__ == "__main__":
    main()
