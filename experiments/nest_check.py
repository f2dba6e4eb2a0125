"""NEST 3.10 reference runs for jaxlif's cross-checks (docs/nest.md; tests/test_nest.py).

Run with the interpreter of the NEST environment, never the library's (this script does not import
jaxlif; NEST lives in its own virtual environment, like Brian2 for the benchmark)::

    python3 -m venv .venv-nest && .venv-nest/bin/pip install nest-simulator==3.10.0
    .venv-nest/bin/python experiments/nest_check.py stp  --input stp_in.json --out stp_out.json
    .venv-nest/bin/python experiments/nest_check.py cond --input cond_in.npz --out cond_out.json

``stp``: one ``tsodyks2_synapse`` per train.  Input JSON::

    {"resolution": 0.1,                                    # ms; the spike times must lie on its grid
     "trains": [[t0, t1, ...], ...],                       # spike times [ms], > 0, increasing
     "synapses": [{"U": 0.2, "tau_rec": 100.0, "tau_fac": 750.0}, ...],   # one per train
     "u": "U"}                                             # initial u: "U" (default), "nest" or a number

Each train is played by a ``spike_generator`` into a ``parrot_neuron`` (NEST refuses a generator
connected straight through ``tsodyks2_synapse``), whose spikes go through the ``tsodyks2_synapse``
(``weight`` 1, so the weight NEST sends is the release ``u x``) to an ``iaf_psc_delta`` that never
fires; a ``weight_recorder`` reads every sent weight.  NEST's default ``u`` is 0.5 whatever ``U`` is,
and NEST sends the first spike with the stored ``u``: ``"u": "U"`` sets ``u = U`` on every synapse
(the Tsodyks-Markram model with u at rest U before the first spike), ``"u": "nest"`` leaves NEST's
default.  Output JSON: ``{"release": [[...], ...], "spike_ms": [[...], ...], "nest_version": ...}``
(``spike_ms``: the times the weight_recorder stamps, the parrot's spikes, one delay (= resolution) after the input),
one list per train.

``cond``: one ``iaf_cond_exp`` per row of given per-step input counts.  Input ``.npz``: ``n_E``,
``n_I`` (``(B, n_steps)`` counts on the grid ``t_k = k * dt``; column 0 must be zero), and the
scalars ``dt``, ``resolution`` (NEST's, ms; ``dt`` must be a multiple of it), ``T`` (ms), ``C_m``
(pF), ``g_L`` (nS), ``E_L``, ``V_th``, ``V_reset``, ``V_init`` (mV), ``t_ref`` (ms), ``E_ex``,
``E_in`` (mV), ``tau_syn_ex``, ``tau_syn_in`` (ms), ``w_ex``, ``w_in`` (nS per input spike).
The ``n`` spikes of step ``k`` leave a ``spike_generator`` at ``k dt - resolution`` with
multiplicity ``n`` and arrive, after the minimal delay of one resolution step, at ``t_k``: NEST adds
them to ``g`` at the end of the step that ends at ``t_k``, i.e. ``g`` jumps at ``t_k`` (jaxlif's
``integrator="exp_euler"`` convention, docs/conventions.md section 10).  NEST reports a spike at the
end of the resolution step in which ``V_m`` reached ``V_th`` and clamps ``V_m`` at ``V_reset`` for
``t_ref`` from there.  Output JSON: ``{"spike_times": [[...], ...], "n_spikes": [...],
"seconds": ..., "nest_version": ...}``.

``network``: a recurrent network of ``iaf_cond_exp`` neurons (one parameter set) on given synapses,
with an independent Poisson drive per neuron.  Input ``.npz``: ``pre``, ``post`` (0-based neuron
indices), ``weight`` (nS; negative for an inhibitory synapse), the scalars ``n`` (neurons), ``delay``
(ms, every synapse), ``drive_rate`` (Hz: the summed rate of a neuron's drive), ``drive_weight`` (nS),
``seed`` (NEST's ``rng_seed``), ``resolution``, ``T`` and the neuron's ``C_m``, ``g_L``, ``E_L``,
``V_th``, ``V_reset``, ``V_init``, ``t_ref``, ``E_ex``, ``E_in``, ``tau_syn_ex``, ``tau_syn_in`` (units as for
``cond``).  A spike leaves at the end of the resolution step in which ``V_m`` crossed ``V_th`` and moves
the target's ``g`` ``delay`` later.  Output JSON: ``{"n_spikes": [...] per neuron, "seconds": ...,
"nest_version": ...}``.

Exit status 0 on success, 2 on a bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _nest(resolution: float, threads: int):
    import nest
    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    nest.set(resolution=float(resolution), local_num_threads=int(threads), print_time=False)
    return nest


def _steps(t_ms: np.ndarray, resolution: float, what: str) -> np.ndarray:
    """Times [ms] as integer multiples of ``resolution``; refuses times off that grid."""
    k = np.rint(np.asarray(t_ms, dtype=float) / resolution)
    if np.any(np.abs(k * resolution - t_ms) > 1e-9 * np.maximum(1.0, np.abs(t_ms))):
        raise ValueError(f"{what} must lie on the grid of resolution={resolution} ms")
    return k.astype(np.int64)


def run_stp(spec: dict, threads: int = 1) -> dict:
    resolution = float(spec.get("resolution", 0.1))
    trains, synapses = spec["trains"], spec["synapses"]
    if len(trains) != len(synapses):
        raise ValueError(f"{len(trains)} trains but {len(synapses)} synapses; give one synapse per train")
    u_mode = spec.get("u", "U")
    nest = _nest(resolution, threads)
    delay = resolution
    recorder = nest.Create("weight_recorder")
    nest.CopyModel("tsodyks2_synapse", "tsodyks2_recorded", {"weight_recorder": recorder})
    target = nest.Create("iaf_psc_delta", params={"V_th": 1e12})
    parrots, t_end = [], 0.0
    for i, (train, syn) in enumerate(zip(trains, synapses)):
        t = np.asarray(train, dtype=float)
        if t.ndim != 1 or t.size == 0 or np.any(t <= 0) or np.any(np.diff(t) <= 0):
            raise ValueError(f"trains[{i}] must be a non-empty list of increasing times > 0 ms")
        k = _steps(t, resolution, f"trains[{i}]")
        generator = nest.Create("spike_generator", params={"spike_times": (k * resolution).tolist()})
        parrot = nest.Create("parrot_neuron")
        nest.Connect(generator, parrot, syn_spec={"delay": delay})
        params = {"synapse_model": "tsodyks2_recorded", "U": float(syn["U"]), "tau_rec": float(syn["tau_rec"]),
                  "tau_fac": float(syn["tau_fac"]), "x": 1.0, "weight": 1.0, "delay": delay}
        if u_mode == "U":
            params["u"] = float(syn["U"])
        elif u_mode != "nest":
            params["u"] = float(u_mode)
        nest.Connect(parrot, target, syn_spec=params)
        parrots.append(parrot.global_id)
        t_end = max(t_end, float(t[-1]))
    nest.Simulate(t_end + 3 * delay + 1.0)
    events = recorder.get("events")
    senders, times, weights = (np.asarray(events[f]) for f in ("senders", "times", "weights"))
    release, spike_ms = [], []
    for i, gid in enumerate(parrots):
        mine = senders == gid
        order = np.argsort(times[mine], kind="stable")
        release.append(weights[mine][order].tolist())
        spike_ms.append(times[mine][order].tolist())
        if len(release[-1]) != len(trains[i]):
            raise RuntimeError(f"train {i}: NEST recorded {len(release[-1])} releases for {len(trains[i])} spikes")
    return {"release": release, "spike_ms": spike_ms, "nest_version": nest.__version__, "u": u_mode,
            "resolution": resolution}


COND_SCALARS = ("dt", "resolution", "T", "C_m", "g_L", "E_L", "V_th", "V_reset", "V_init", "t_ref", "E_ex", "E_in",
                "tau_syn_ex", "tau_syn_in", "w_ex", "w_in")


def _neurons_with_recorder(nest, n: int, p: dict):
    """``n`` ``iaf_cond_exp`` neurons with the parameters ``p`` (jaxlif's names mapped to NEST's, no bias
    current) and one ``spike_recorder`` connected to all of them."""
    neurons = nest.Create("iaf_cond_exp", n, params={
        "C_m": p["C_m"], "g_L": p["g_L"], "E_L": p["E_L"], "V_th": p["V_th"], "V_reset": p["V_reset"],
        "V_m": p["V_init"], "t_ref": p["t_ref"], "E_ex": p["E_ex"], "E_in": p["E_in"],
        "tau_syn_ex": p["tau_syn_ex"], "tau_syn_in": p["tau_syn_in"], "I_e": 0.0})
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)
    return neurons, recorder


def run_cond(data, threads: int = 1) -> dict:
    missing = [name for name in ("n_E", "n_I") + COND_SCALARS if name not in data]
    if missing:
        raise ValueError(f"the input lacks {', '.join(missing)}")
    p = {name: float(data[name]) for name in COND_SCALARS}
    n_E, n_I = np.asarray(data["n_E"]), np.asarray(data["n_I"])
    if n_E.ndim != 2 or n_E.shape != n_I.shape:
        raise ValueError(f"n_E and n_I must be (B, n_steps) of one shape, got {n_E.shape} and {n_I.shape}")
    if np.any(n_E[:, 0]) or np.any(n_I[:, 0]):
        raise ValueError("column 0 of n_E and n_I must be zero (an input at t = 0 cannot arrive through a delay)")
    if np.any(n_E < 0) or np.any(n_I < 0) or np.any(n_E != np.rint(n_E)) or np.any(n_I != np.rint(n_I)):
        raise ValueError("n_E and n_I must be non-negative integer counts")
    res = p["resolution"]
    ratio = int(round(p["dt"] / res))
    if ratio < 1 or abs(ratio * res - p["dt"]) > 1e-9:
        raise ValueError(f"dt={p['dt']} ms must be a whole multiple of resolution={res} ms")
    nest = _nest(res, threads)
    B, steps = n_E.shape
    neurons, recorder = _neurons_with_recorder(nest, B, p)
    for counts, weight in ((n_E, p["w_ex"]), (n_I, -p["w_in"])):   # NEST: a negative weight is inhibitory
        generators = nest.Create("spike_generator", B)
        for b in range(B):
            k = np.flatnonzero(counts[b])
            # on the resolution grid: step k leaves at (k * ratio - 1) resolution steps, arrives at k * ratio
            times = np.round((k * ratio - 1) * res, 10)
            generators[b].set(spike_times=times.tolist(), spike_multiplicities=counts[b, k].astype(int).tolist())
        nest.Connect(generators, neurons, "one_to_one", syn_spec={"weight": weight, "delay": res})
    start = time.perf_counter()
    nest.Simulate(p["T"])
    seconds = time.perf_counter() - start
    events = recorder.get("events")
    senders, times = np.asarray(events["senders"]), np.asarray(events["times"])
    first = neurons[0].global_id
    spike_times = [np.sort(times[senders == first + b]).tolist() for b in range(B)]
    return {"spike_times": spike_times, "n_spikes": [len(s) for s in spike_times], "seconds": seconds,
            "nest_version": nest.__version__, "resolution": res, "threads": threads}


NETWORK_SCALARS = ("n", "delay", "drive_rate", "drive_weight", "seed", "resolution", "T", "C_m", "g_L", "E_L",
                   "V_th", "V_reset", "V_init", "t_ref", "E_ex", "E_in", "tau_syn_ex", "tau_syn_in")


def run_network(data, threads: int = 1) -> dict:
    missing = [name for name in ("pre", "post", "weight") + NETWORK_SCALARS if name not in data]
    if missing:
        raise ValueError(f"the input lacks {', '.join(missing)}")
    p = {name: float(data[name]) for name in NETWORK_SCALARS}
    pre, post, weight = (np.asarray(data[k]) for k in ("pre", "post", "weight"))
    n = int(p["n"])
    if not (pre.shape == post.shape == weight.shape) or pre.ndim != 1:
        raise ValueError("pre, post and weight must be 1-D arrays of one length")
    if pre.size and (min(pre.min(), post.min()) < 0 or max(pre.max(), post.max()) >= n):
        raise ValueError(f"pre and post must be neuron indices in [0, {n})")
    nest = _nest(p["resolution"], threads)
    nest.rng_seed = int(p["seed"])
    neurons, recorder = _neurons_with_recorder(nest, n, p)
    first = neurons[0].global_id
    nest.Connect((pre + first).astype(int), (post + first).astype(int), "one_to_one",
                 syn_spec={"weight": weight.astype(float), "delay": np.full(pre.size, p["delay"])})
    drive = nest.Create("poisson_generator", params={"rate": p["drive_rate"]})   # independent per target
    nest.Connect(drive, neurons, syn_spec={"weight": p["drive_weight"], "delay": p["resolution"]})
    start = time.perf_counter()
    nest.Simulate(p["T"])
    seconds = time.perf_counter() - start
    senders = np.asarray(recorder.get("events")["senders"]) - first
    return {"n_spikes": np.bincount(senders, minlength=n).tolist(), "seconds": seconds,
            "nest_version": nest.__version__, "resolution": p["resolution"], "threads": threads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("stp", "cond", "network"),
                        help="tsodyks2_synapse releases, iaf_cond_exp spikes or a network's spike counts")
    parser.add_argument("--input", required=True, help="input spec: JSON (stp) or .npz (cond, network)")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--threads", type=int, default=1, help="NEST threads (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.kind == "stp":
            with open(args.input) as f:
                result = run_stp(json.load(f), args.threads)
        else:
            with np.load(args.input) as data:
                result = (run_cond if args.kind == "cond" else run_network)(dict(data), args.threads)
    except (ValueError, KeyError) as err:
        print(f"nest_check.py {args.kind}: {err}", file=sys.stderr)
        return 2
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
