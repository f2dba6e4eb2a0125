r"""Recorded amplitude trains in the shape labs have them: validation, a tidy CSV reader, simulation.

Layout (one synapse)::

    spike_times_ms   (n_protocols, n_spikes)             spike times of each protocol [ms]
    amplitudes       (n_protocols, n_sweeps, n_spikes)    PSC amplitude of every pulse (any unit)

Shorter protocols are padded with NaN at the end of their spike times (and the amplitudes
there); a protocol with fewer sweeps has whole sweeps of NaN.  Many synapses: a leading
``(n_synapses,)`` axis on the amplitudes (and optionally on the spike times).  Every other NaN
is an error that names the protocol, sweep and pulse (``allow_missing=True`` accepts missing
pulses instead, and the fit result counts the points it used).

CSV (:func:`read_trains_csv`): one row per pulse, columns ``protocol, sweep, spike_time_ms,
amplitude`` (the amplitude column may carry its unit: ``amplitude_pA``; an optional ``sd``
column gives a per-point noise sd in the same unit).  Protocol and sweep are labels, ordered by
first appearance; the pulses of a sweep are ordered by time; every sweep of a protocol must
have the same spike times.  A UTF-8 byte-order mark is accepted; ``#`` lines and blank lines
are skipped; anything else that does not parse is an error naming the line.

Real data: :func:`mossy_fibre` (Chamberland et al. 2018, as packaged by Rossbroich et al. 2021:
means and SEMs, shipped); :func:`read_chamberland2018` (the per-sweep amplitudes of the same
study, 7 protocols, from the user's copy of the srplasticity repository's processed files or a
tidy CSV written from them by :func:`write_trains_csv`).
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif.fitting.forward import check_spike_times
from jaxlif.fitting.models import Model

__all__ = ["TrainData", "check_trains", "read_trains_csv", "write_trains_csv", "regular_protocols",
           "simulate_trains", "mossy_fibre", "MOSSY_FIBRE_CITATION", "read_chamberland2018",
           "CHAMBERLAND2018_PROTOCOLS", "CHAMBERLAND2018_CITATION"]


class TrainData(NamedTuple):
    """Validated trains of one or many synapses.

    Attributes:
        spike_times_ms: ``(n_protocols, n_spikes)`` or ``(n_synapses, n_protocols, n_spikes)``.
        amplitudes: ``([n_synapses,] n_protocols, n_sweeps, n_spikes)``, NaN where absent.
        mask: booleans of the amplitudes' shape: the points that enter the fit.
        noise_sd: per-point sd broadcast to the amplitudes' shape, or ``None``.
        unit: the amplitudes' unit (text, e.g. ``"pA"``; ``""`` unknown).
        protocols, sweeps: labels (from a CSV) or ``None``.
    """

    spike_times_ms: np.ndarray
    amplitudes: np.ndarray
    mask: np.ndarray
    noise_sd: np.ndarray | None = None
    unit: str = ""
    protocols: tuple | None = None
    sweeps: tuple | None = None


def _where(name, idx):
    return f"{name}[{', '.join(str(int(i)) for i in idx)}]"


def check_trains(spike_times_ms: ArrayLike | Sequence[Any], amplitudes: ArrayLike | Sequence[Any], *,
                 noise_sd: ArrayLike | Sequence[Any] | None = None, positive: bool = False,
                 allow_missing: bool = False, unit: str = "") -> TrainData:
    """Validate trains (module docstring) and return :class:`TrainData`.

    Args:
        spike_times_ms: ``(n_protocols, n_spikes)`` (shared by all synapses) or with a leading
            synapse axis; NaN-padded at the end; increasing.
        amplitudes: ``(n_protocols, n_sweeps, n_spikes)`` or ``(n_synapses, ...)``.
        noise_sd: ``None``, a scalar, per pulse ``(n_spikes,)``, or per point (the amplitudes'
            shape); > 0 where the amplitudes are finite.
        positive: require amplitudes > 0 (the gamma noise model).
        allow_missing: accept NaN amplitudes at valid pulses (missing points).

    Raises:
        ValueError: naming the argument and the index of the first offending entry.
    """
    for name, value in (("spike_times_ms", spike_times_ms), ("amplitudes", amplitudes)):
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{name} must be concrete (NumPy arrays), not traced: the data set "
                            f"the shapes of the fit")
    t = check_spike_times("spike_times_ms", spike_times_ms)
    y = np.asarray(_checks.check_numeric("amplitudes", amplitudes), dtype=float)
    if y.ndim not in (3, 4):
        raise ValueError(f"amplitudes must have shape (n_protocols, n_sweeps, n_spikes) or "
                         f"(n_synapses, n_protocols, n_sweeps, n_spikes), got shape {y.shape}")
    if t.ndim not in (2, 3):
        raise ValueError(f"spike_times_ms must have shape (n_protocols, n_spikes) or "
                         f"(n_synapses, n_protocols, n_spikes), got shape {t.shape}")
    tb = t if t.ndim == y.ndim - 1 else t[None] if y.ndim == 4 else t
    if t.ndim == 3 and y.ndim == 3:
        raise ValueError(f"spike_times_ms has a synapse axis (shape {t.shape}) but amplitudes "
                         f"(shape {y.shape}) have none")
    want = tb.shape[-2:]
    if (y.shape[-3], y.shape[-1]) != want or (y.ndim == 4 and tb.shape[0] not in (1, y.shape[0])):
        raise ValueError(f"amplitudes of shape {y.shape} do not match spike_times_ms of shape "
                         f"{t.shape}: need (..., n_protocols={want[0]}, n_sweeps, "
                         f"n_spikes={want[1]})")
    if y.shape[-2] == 0:
        raise ValueError("amplitudes has no sweeps (n_sweeps = 0)")
    if np.isinf(y).any():
        idx = np.argwhere(np.isinf(y))[0]
        raise ValueError(f"{_where('amplitudes', idx)}={y[tuple(idx)]} is infinite")
    spike = ~np.isnan(tb)[..., None, :]                       # (..., P, 1, n)
    finite = np.isfinite(y)
    extra = finite & ~spike
    if extra.any():
        idx = np.argwhere(extra)[0]
        raise ValueError(f"{_where('amplitudes', idx)}={y[tuple(idx)]} is at a padded pulse: "
                         f"its protocol has no spike {idx[-1]} (spike_times_ms is NaN there)")
    sweep_present = finite.any(axis=-1, keepdims=True)
    missing = spike & sweep_present & ~finite
    if missing.any() and not allow_missing:
        idx = np.argwhere(missing)[0]
        raise ValueError(f"{_where('amplitudes', idx)} is NaN inside a recorded sweep "
                         f"(protocol {idx[-3]}, sweep {idx[-2]}, pulse {idx[-1]}); NaN may only "
                         f"pad whole sweeps or pulses after a protocol's last spike (pass "
                         f"allow_missing=True to fit without the missing pulses)")
    mask = finite
    per_syn = mask.reshape((-1,) + mask.shape[-3:]) if y.ndim == 4 else mask[None]
    for i, m in enumerate(per_syn):
        if not m.any():
            raise ValueError(f"amplitudes{'' if y.ndim == 3 else f'[{i}]'} has no finite amplitude")
        for p in range(m.shape[0]):
            if not m[p].any():
                raise ValueError(f"amplitudes{'' if y.ndim == 3 else f'[{i}]'}: protocol {p} has "
                                 f"no recorded sweep")
    if positive and np.any(y[mask] <= 0):
        idx = np.argwhere(mask & (np.nan_to_num(y, nan=1.0) <= 0))[0]
        raise ValueError(f"{_where('amplitudes', idx)}={y[tuple(idx)]} must be > 0 for the "
                         f"gamma noise model (multiplicative noise needs positive amplitudes; "
                         f"flip the sign of inward currents, or use noise='gaussian')")
    sd = None
    if noise_sd is not None:
        s = np.asarray(_checks.check_numeric("noise_sd", noise_sd), dtype=float)
        try:
            sd = np.broadcast_to(s, y.shape).copy()
        except ValueError:
            raise ValueError(f"noise_sd of shape {s.shape} must be a scalar, per pulse "
                             f"(n_spikes={y.shape[-1]},) or per point {y.shape}") from None
        bad = mask & ~(np.isfinite(sd) & (sd > 0))
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise ValueError(f"{_where('noise_sd', idx)}={sd[tuple(idx)]} must be finite and > 0")
        sd = np.where(mask, sd, np.nan)
    return TrainData(t, np.where(mask, y, np.nan), mask, sd, unit)


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------

_REQUIRED = ("protocol", "sweep", "spike_time_ms")


def _parse_float(text, line, column, path):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}, column {column!r}: {text!r} is not a number") \
            from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: line {line}, column {column!r}: {text!r} is not a finite "
                         f"number")
    return value


def read_trains_csv(path: str | os.PathLike, *, allow_missing: bool = False) -> TrainData:
    """Read a tidy CSV of amplitude trains (module docstring) into :class:`TrainData`.

    Example file::

        protocol,sweep,spike_time_ms,amplitude_pA
        20Hz,1,0,101.2
        20Hz,1,50,143.0
        ...

    Raises:
        ValueError: unreadable file, missing columns, a value that is not a number (naming the
            line and column), duplicated pulses, sweeps of one protocol with different spike
            times, or any check of :func:`check_trains`.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            lines = list(enumerate(csv.reader(fh), start=1))
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err.reason})") from err
    rows = [(n, [c.strip() for c in row]) for n, row in lines
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"{path}: no header and no data; expected columns "
                         f"protocol,sweep,spike_time_ms,amplitude")
    header_line, header = rows[0]
    names = [h.lower() for h in header]
    amp_cols = [i for i, h in enumerate(names) if h == "amplitude" or h.startswith("amplitude_")]
    missing = [c for c in _REQUIRED if c not in names] + ([] if amp_cols else ["amplitude"])
    if missing:
        raise ValueError(f"{path}: line {header_line}: missing column(s) {missing}; the header "
                         f"must name protocol, sweep, spike_time_ms and amplitude[_unit] "
                         f"(found {header})")
    if len(amp_cols) > 1:
        raise ValueError(f"{path}: line {header_line}: several amplitude columns "
                         f"{[header[i] for i in amp_cols]}")
    col = {c: names.index(c) for c in _REQUIRED}
    col["amplitude"] = amp_cols[0]
    unit = header[amp_cols[0]][len("amplitude_"):] if "_" in header[amp_cols[0]] else ""
    sd_col = names.index("sd") if "sd" in names else None
    records: dict = {}
    protocols: list = []
    sweeps: dict = {}
    for n, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path}: line {n} has {len(row)} fields, the header has "
                             f"{len(header)}")
        prot, sweep = row[col["protocol"]], row[col["sweep"]]
        if not prot or not sweep:
            raise ValueError(f"{path}: line {n}: empty protocol or sweep label")
        t = _parse_float(row[col["spike_time_ms"]], n, header[col["spike_time_ms"]], path)
        text = row[col["amplitude"]]
        if allow_missing and text.lower() in ("", "nan", "na"):
            a = math.nan
        else:
            a = _parse_float(text, n, header[col["amplitude"]], path)
        s = None if sd_col is None else _parse_float(row[sd_col], n, header[sd_col], path)
        if prot not in sweeps:
            protocols.append(prot)
            sweeps[prot] = []
        if sweep not in sweeps[prot]:
            sweeps[prot].append(sweep)
        key = (prot, sweep)
        pulses = records.setdefault(key, {})
        if t in pulses:
            raise ValueError(f"{path}: line {n}: protocol {prot!r} sweep {sweep!r} already has a "
                             f"pulse at {t} ms (line {pulses[t][2]})")
        pulses[t] = (a, s, n)
    if not records:
        raise ValueError(f"{path}: header but no data rows")
    times = {}
    for prot in protocols:
        ref_sweep = sweeps[prot][0]
        ref = sorted(records[(prot, ref_sweep)])
        for sw in sweeps[prot][1:]:
            got = sorted(records[(prot, sw)])
            if got != ref:      # name a line of the sweep that differs: its first pulse out of step
                i = next((k for k, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
                if i < len(got):
                    line = records[(prot, sw)][got[i]][2]
                    what = (f"has a pulse at {got[i]} ms where sweep {ref_sweep!r} has {ref[i]} ms"
                            if i < len(ref) else f"has a pulse at {got[i]} ms that sweep {ref_sweep!r} lacks")
                else:
                    line = records[(prot, sw)][got[-1]][2]
                    what = f"ends before sweep {ref_sweep!r}'s pulse at {ref[i]} ms"
                raise ValueError(f"{path}: line {line}: protocol {prot!r} sweep {sw!r} {what}; every "
                                 f"sweep of a protocol must have the same spike times")
        times[prot] = ref
    n_spk = max(len(v) for v in times.values())
    n_sw = max(len(v) for v in sweeps.values())
    T = np.full((len(protocols), n_spk), np.nan)
    Y = np.full((len(protocols), n_sw, n_spk), np.nan)
    S = None if sd_col is None else np.full(Y.shape, np.nan)
    for p, prot in enumerate(protocols):
        T[p, :len(times[prot])] = times[prot]
        for w, sw in enumerate(sweeps[prot]):
            for k, t in enumerate(times[prot]):
                a, s, _ = records[(prot, sw)][t]
                Y[p, w, k] = a
                if S is not None:
                    S[p, w, k] = s
    data = check_trains(T, Y, noise_sd=S, allow_missing=allow_missing, unit=unit)
    return data._replace(protocols=tuple(protocols),
                         sweeps=tuple(tuple(sweeps[p]) for p in protocols))


def write_trains_csv(path: str | os.PathLike, data: TrainData, *, header: str = "") -> None:
    """Write one synapse's :class:`TrainData` as the tidy CSV :func:`read_trains_csv` reads.

    One row per pulse of every recorded sweep (``protocol,sweep,spike_time_ms,amplitude[_unit]``
    and ``sd`` when the data carry one); a missing pulse inside a recorded sweep is written as
    ``nan`` (read it back with ``allow_missing=True``); sweeps with no amplitude are left out.
    Amplitudes with 10 significant digits.  ``header``: text written first as ``#`` lines
    (provenance, citation, licence).
    """
    if data.amplitudes.ndim != 3:
        raise ValueError("write_trains_csv writes one synapse: amplitudes of shape (n_protocols, "
                         "n_sweeps, n_spikes)")
    P, W, _ = data.amplitudes.shape
    prots = data.protocols or tuple(str(p + 1) for p in range(P))
    sweeps = data.sweeps or tuple(tuple(str(w + 1) for w in range(W)) for _ in range(P))
    amp = "amplitude" + (f"_{data.unit}" if data.unit else "")
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        for line in header.splitlines():
            fh.write(f"# {line}".rstrip() + "\n")
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["protocol", "sweep", "spike_time_ms", amp] +
                     (["sd"] if data.noise_sd is not None else []))
        for p in range(P):
            times = data.spike_times_ms[p]
            for w in range(W):
                y = data.amplitudes[p, w]
                if not np.isfinite(y).any():
                    continue
                for k in np.flatnonzero(np.isfinite(times)):
                    row = [prots[p], sweeps[p][w], f"{times[k]:.10g}",
                           f"{y[k]:.10g}" if np.isfinite(y[k]) else "nan"]
                    if data.noise_sd is not None:
                        row.append(f"{data.noise_sd[p, w, k]:.10g}")
                    out.writerow(row)


# --------------------------------------------------------------------------------------
# Protocols and simulated data
# --------------------------------------------------------------------------------------


def regular_protocols(rates_hz: ArrayLike | Sequence[float], n_spikes: int, *,
                      recovery_ms: ArrayLike | Sequence[float] | None = None) -> np.ndarray:
    """Spike times ``(n_protocols, n_spikes [+1])`` [ms] of regular trains from 0 ms.

    With ``recovery_ms`` (one value per rate, or None), a recovery pulse follows the last spike
    of the train after that gap (``nan`` for no recovery pulse in that protocol).
    """
    rates = np.atleast_1d(np.asarray(rates_hz, dtype=float))
    _checks.check_positive("rates_hz", rates, "Hz")
    n_spikes = _checks.check_count("n_spikes", n_spikes, minimum=1)
    t = np.arange(n_spikes)[None, :] * (1000.0 / rates[:, None])
    if recovery_ms is None:
        return t
    rec = np.broadcast_to(np.asarray(recovery_ms, dtype=float), rates.shape)
    return np.concatenate([t, (t[:, -1] + rec)[:, None]], axis=1)


def given_sd_taus(noise_params: Any, noise_taus) -> tuple | None:
    """The SD time constants ``noise_params.tau`` of ``noise="gamma_kernel"`` as a tuple (one per
    ``c_j``), or ``None`` when not given there (then ``noise_taus`` or the default apply).
    Raises ``ValueError`` when both ``noise_params.tau`` and ``noise_taus`` are given, or when
    ``tau`` and ``c`` differ in length."""
    tau = getattr(noise_params, "tau", None)
    if tau is None:
        return None
    if noise_taus is not None:
        raise ValueError("the SD time constants are given twice: noise_params.tau and "
                         "noise_taus; give one of them")
    tau = tuple(tau)
    if len(tau) != len(noise_params.c):
        raise ValueError(f"noise_params.c has {len(noise_params.c)} amplitudes and "
                         f"noise_params.tau {len(tau)} time constants; give one per c_j")
    return tau


def simulate_trains(key: jax.Array, params: Any, spike_times_ms: ArrayLike | Sequence[Any], *,
                    model: str | Model = "tm", n_sweeps: int, scale: ArrayLike | Sequence[float] = 1.0,
                    noise: str = "gaussian", noise_sd: ArrayLike | Sequence[Any] | None = None,
                    noise_cv: float | None = None, noise_params: Any = None,
                    noise_taus: Sequence[float] | None = None) -> np.ndarray:
    """Simulated amplitudes ``(n_protocols, n_sweeps, n_spikes)`` around ``scale * release``.

    Gaussian: ``scale * r + noise_sd * N(0, 1)``; gamma: mean ``scale * r`` and CV ``noise_cv``;
    ``"gamma_kernel"``: gamma with mean ``scale * r`` and the SD of ``noise_params`` (an
    :class:`~jaxlif.fitting.trains.SDKernelParams`; one set, not batched) with time constants
    ``noise_params.tau`` if given, else ``noise_taus`` (default 15, 100, 650 ms); ``"binomial"``: Gaussian with the
    release-dependent sd ``noise_sd * sqrt(r (1 - r))`` of the ``"binomial"`` likelihood
    (:mod:`~jaxlif.fitting.likelihood`; ``noise_sd`` is its ``s``, ``s^2 = q A`` for a quantal
    size ``q``).
    ``params`` may carry a leading batch axis (leaves of shape ``(B,)``): the result is then
    ``(B, n_protocols, n_sweeps, n_spikes)``, one dataset per parameter set, from one key.
    """
    from jaxlif.fitting.forward import stp_amplitudes

    times = check_spike_times("spike_times_ms", spike_times_ms)
    batch = np.shape(params[0])
    r = np.asarray(stp_amplitudes(
        type(params)(*(np.asarray(x)[..., None] for x in params)) if batch else params,
        times, model=model), dtype=float)                  # (B?, P, n)
    mean = np.asarray(scale)[..., None, None] * r if batch else scale * r
    shape = mean.shape[:-1] + (n_sweeps, mean.shape[-1])
    mean = np.expand_dims(mean, -2)
    dtype = jnp.result_type(float)
    if noise == "gaussian":
        if noise_sd is None:
            raise ValueError("noise='gaussian' needs noise_sd")
        z = np.asarray(jax.random.normal(key, shape, dtype), dtype=float)
        y = mean + np.asarray(noise_sd) * z
    elif noise == "binomial":
        if noise_sd is None:
            raise ValueError("noise='binomial' needs noise_sd (the scale s of the sd "
                             "s sqrt(r (1 - r)))")
        z = np.asarray(jax.random.normal(key, shape, dtype), dtype=float)
        rr = np.expand_dims(r, -2)
        y = mean + np.asarray(noise_sd) * np.sqrt(rr * (1.0 - rr)) * z
    elif noise == "gamma":
        if noise_cv is None:
            raise ValueError("noise='gamma' needs noise_cv")
        k = 1.0 / float(noise_cv) ** 2
        g = np.asarray(jax.random.gamma(key, k, shape, dtype), dtype=float)
        y = mean * g / k
    elif noise == "gamma_kernel":
        from jaxlif.fitting.models import SRP_TAUS_MS, kernel_drive
        if noise_params is None:
            raise ValueError("noise='gamma_kernel' needs noise_params (SDKernelParams)")
        tau = given_sd_taus(noise_params, noise_taus)
        taus = np.asarray(SRP_TAUS_MS if noise_taus is None else noise_taus, dtype=float)
        if tau is not None:
            taus = np.asarray([float(t) for t in tau])
        c = np.asarray([float(x) for x in noise_params.c])
        d = np.diff(times, axis=-1)
        # jitted: op by op, the scan of a fresh closure was traced and compiled again on every call (13 programs
        # in test_fit_noise_kernel.py); the same numbers bit for bit (checked in float32 and float64)
        drive = np.asarray(jax.jit(kernel_drive)(c / taus, taus, np.where(np.isfinite(d), d, 1.0)), float)
        sd = float(noise_params.s) / (1.0 + np.exp(-(float(noise_params.b_s) + drive)))
        sd = np.expand_dims(np.broadcast_to(sd, mean.shape[:-2] + sd.shape[-1:]), -2)
        k = (mean / sd) ** 2
        g = np.asarray(jax.random.gamma(key, np.broadcast_to(np.nan_to_num(k, nan=1.0), shape),
                                        shape, dtype), dtype=float)
        y = g * sd ** 2 / mean
    else:
        raise ValueError(f"noise={noise!r} is not one of ('gaussian', 'gamma', 'binomial', "
                         f"'gamma_kernel')")
    return np.where(np.isnan(mean), np.nan, y)


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------

MOSSY_FIBRE_CITATION = (
    "Chamberland S, Timofeeva Y, Evstratova A, Volynski K, Toth K (2018). Action potential "
    "counting at giant mossy fiber terminals gates information transfer in the hippocampus. "
    "PNAS 115(28):7434-7439. Amplitudes normalised per cell as packaged with Rossbroich J, "
    "Trotter D, Beninger J, Toth K, Naud R (2021). Linear-nonlinear cascades capture synaptic "
    "dynamics. PLoS Comput Biol 17(3):e1008013.")

_MOSSY = {
    # rate [Hz]: (mean, SEM) over sweeps of the normalised EPSC amplitude, pulses 1..10
    20.0: ((0.99, 1.36, 1.82, 2.39, 3.20, 3.72, 4.06, 4.61, 5.16, 5.58),
           (0.04, 0.05, 0.06, 0.08, 0.11, 0.12, 0.12, 0.14, 0.17, 0.18)),
    100.0: ((1.06, 1.70, 2.83, 4.34, 5.16, 5.79, 5.98, 6.61, 6.77, 6.94),
            (0.04, 0.06, 0.10, 0.15, 0.15, 0.16, 0.17, 0.19, 0.20, 0.21)),
}


def mossy_fibre() -> TrainData:
    """Hippocampal mossy fibre -> CA3 EPSC trains: 10 pulses at 20 Hz and at 100 Hz.

    Mean over sweeps (about 379 at 20 Hz, 409-486 at 100 Hz) of the amplitude normalised per
    cell, with its standard error as ``noise_sd`` (per point): one "sweep" per protocol holding
    the mean.  Source: :data:`MOSSY_FIBRE_CITATION`.  Strongly facilitating (about 5.6x at 20 Hz,
    7x at 100 Hz by the 10th pulse).
    """
    rates = sorted(_MOSSY)
    t = regular_protocols(rates, 10)
    y = np.array([_MOSSY[r][0] for r in rates])[:, None, :]
    sd = np.array([_MOSSY[r][1] for r in rates])[:, None, :]
    data = check_trains(t, y, noise_sd=sd, unit="normalised")
    return data._replace(protocols=tuple(f"{r:g} Hz" for r in rates), sweeps=(("mean",),) * 2)


# --------------------------------------------------------------------------------------
# Per-sweep mossy-fibre data (Chamberland et al. 2018), read from the user's copy
# --------------------------------------------------------------------------------------

CHAMBERLAND2018_CITATION = (
    "Chamberland S, Timofeeva Y, Evstratova A, Volynski K, Toth K (2018). Action potential "
    "counting at giant mossy fiber terminals gates information transfer in the hippocampus. "
    "PNAS 115(28):7434-7439. Per-sweep EPSC amplitudes normalised per cell, as processed for "
    "Rossbroich J, Trotter D, Beninger J, Toth K, Naud R (2021). Linear-nonlinear cascades "
    "capture synaptic dynamics. PLoS Comput Biol 17(3):e1008013 (repository "
    "nauralcodinglab/srplasticity, data/processed/chamberland2018, GPL-3.0).")

#: The seven stimulation protocols of the per-sweep data: file key -> (label, inter-spike
#: intervals [ms] after the first spike).  The intervals are those the srplasticity analysis
#: uses for these files (its ``stimulus_dict``); note that the protocol it calls "6 x 111 Hz"
#: is given 5 ms intervals there, which this reader keeps so that likelihoods compare.
CHAMBERLAND2018_PROTOCOLS = {
    "20": ("10 x 20 Hz", (50.0,) * 9),
    "100": ("10 x 100 Hz", (10.0,) * 9),
    "20100": ("5 x 20 Hz + 1 x 100 Hz", (50.0, 50.0, 50.0, 50.0, 10.0)),
    "10020": ("5 x 100 Hz + 1 x 20 Hz", (10.0, 10.0, 10.0, 10.0, 50.0)),
    "10100": ("5 x 10 Hz + 1 x 100 Hz", (100.0, 100.0, 100.0, 100.0, 10.0)),
    "111": ("6 x 111 Hz", (5.0,) * 5),
    "invivo": ("in-vivo burst", (6.0, 90.9, 12.5, 25.6, 9.0)),
}

#: Only these globals may appear in a pickle read by :func:`read_chamberland2018` (NumPy array
#: reconstruction); anything else is refused before it is imported, so a pickle can not run code.
_PICKLE_GLOBALS = {
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else (:data:`_PICKLE_GLOBALS`)."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only NumPy arrays "
                                         f"may be read")
        if module.startswith("numpy.core.") or module.startswith("numpy._core."):
            tail = module.split(".", 2)[2]
            for base in ("numpy._core", "numpy.core"):      # NumPy 2 first, then NumPy 1
                try:
                    return getattr(importlib.import_module(f"{base}.{tail}"), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(importlib.import_module(module), name)


def _read_array_pickle(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as fh:
            arr = _ArrayUnpickler(fh).load()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err.strerror})") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a pickled NumPy array ({err})") from err
    arr = np.asarray(arr, dtype=float) if isinstance(arr, np.ndarray) else None
    if arr is None or arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-d array (n_sweeps, n_pulses)")
    return arr


def read_chamberland2018(path: str | os.PathLike) -> TrainData:
    """The per-sweep mossy fibre -> CA3 EPSC amplitudes of Chamberland et al. (2018).

    Seven protocols (:data:`CHAMBERLAND2018_PROTOCOLS`: 10 x 20 Hz, 10 x 100 Hz, three mixed
    6-pulse trains, 6 x "111 Hz", an in-vivo-like burst), 180-486 sweeps each, amplitudes
    normalised per cell; 14,481 non-zero amplitudes, 89 zeros (release failures) and 314
    missing pulses.  jaxlif does not ship these data (they come from another project's
    repository, :data:`CHAMBERLAND2018_CITATION`); this reads the user's copy.

    Args:
        path: either the folder ``data/processed/chamberland2018`` of a checkout of the
            srplasticity repository (files ``<key>_normalized_by_cell.pkl``, each a pickled
            ``(n_sweeps, n_pulses)`` NumPy array; only array reconstruction is allowed while
            unpickling), or a tidy CSV written from them by :func:`write_trains_csv` (protocols
            labelled by the keys of :data:`CHAMBERLAND2018_PROTOCOLS`).

    Returns:
        :class:`TrainData` with NaN at missing pulses (sweeps shorter than the protocol), zeros
        kept as 0, spike times from the intervals above (first spike at 0 ms), protocols
        labelled by their keys, unit ``"normalised"``.  Rossbroich et al. treat the zeros as
        missing; to fit as they do::

            data = jaxlif.fitting.read_chamberland2018(folder)
            fit = jaxlif.fit_stp_trains(data, model="srp", noise="gamma_kernel",
                                        zeros="missing", allow_missing=True)

    Raises:
        ValueError: a missing file, a pickle holding anything but a 2-d array, a protocol whose
            number of pulses does not match :data:`CHAMBERLAND2018_PROTOCOLS`.
    """
    path = Path(path)
    keys = tuple(CHAMBERLAND2018_PROTOCOLS)
    n_pulses = [1 + len(CHAMBERLAND2018_PROTOCOLS[k][1]) for k in keys]
    if path.is_dir():
        arrays = []
        for k, n in zip(keys, n_pulses):
            f = path / f"{k}_normalized_by_cell.pkl"
            if not f.exists():
                raise ValueError(f"{path}: no file {f.name}; expected the folder "
                                 f"data/processed/chamberland2018 of the srplasticity repository")
            a = _read_array_pickle(f)
            if a.shape[1] != n:
                raise ValueError(f"{f}: {a.shape[1]} pulses per sweep, protocol {k!r} has {n}")
            arrays.append(a)
        T = np.full((len(keys), max(n_pulses)), np.nan)
        Y = np.full((len(keys), max(a.shape[0] for a in arrays), max(n_pulses)), np.nan)
        for p, (k, a) in enumerate(zip(keys, arrays)):
            T[p, :n_pulses[p]] = np.concatenate([[0.0], np.cumsum(CHAMBERLAND2018_PROTOCOLS[k][1])])
            Y[p, :a.shape[0], :a.shape[1]] = a
        # a sweep with no amplitude at all is padding, not a recorded sweep
        data = check_trains(T, Y, allow_missing=True, unit="normalised")
        sweeps = tuple(tuple(str(i + 1) for i in range(a.shape[0])) for a in arrays)
        return data._replace(protocols=keys, sweeps=sweeps)
    data = read_trains_csv(path, allow_missing=True)
    got = tuple(data.protocols)
    if sorted(got) != sorted(keys):
        raise ValueError(f"{path}: protocols {got}, expected {keys}")
    order = [got.index(k) for k in keys]
    T = data.spike_times_ms[order]
    for p, k in enumerate(keys):
        want = np.concatenate([[0.0], np.cumsum(CHAMBERLAND2018_PROTOCOLS[k][1])])
        have = T[p][np.isfinite(T[p])]
        if have.shape != want.shape or not np.allclose(have - have[0], want):
            raise ValueError(f"{path}: protocol {k!r} has spike times {have.tolist()}, expected "
                             f"{want.tolist()} (relative to its first spike)")
    sweeps = tuple(data.sweeps[i] for i in order)
    data = check_trains(T - T[:, :1], data.amplitudes[order], allow_missing=True,
                        unit=data.unit or "normalised")
    return data._replace(protocols=keys, sweeps=sweeps)
