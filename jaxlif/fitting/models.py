r"""Short-term plasticity models for fits: small parameter pytrees, their ranges and release rules.

Every model gives the *release* ``r_k`` of spike ``k`` of a train (dimensionless; the PSC
amplitude is a scale ``A`` times it) from the intervals ``Delta_k = t_{k+1} - t_k`` [ms], starting
from rest at the first spike.  Continuous time, solved exactly between spikes.

``"tm"`` -- Tsodyks-Markram as in the tutorial (:class:`~jaxlif.STPParams`: ``U0, tau_d, tau_f``).
    Just after spike ``k`` the utilisation is ``u_k`` and the resources just before it ``R_k``::

        u_1 = U0,  u_{k+1} = U0 + u_k (1 - U0) exp(-Delta_k / tau_f)
        R_1 = 1,   R_{k+1} = 1 - (1 - R_k (1 - u_k)) exp(-Delta_k / tau_d)
        r_k = u_k R_k

``"tm4"`` -- the same with a facilitation increment ``f`` separate from the baseline ``U``
    (:class:`TM4Params`: ``U, f, tau_d, tau_f``; Markram, Wang & Tsodyks 1998, PNAS 95:5323; the
    form fitted by Costa et al. 2013, Front. Comput. Neurosci. 7:75, and by Rossbroich, Trotter
    & Naud 2021, PLoS Comput. Biol. 17:e1008013)::

        u_1 = U,   u_{k+1} = U + (u_k + f (1 - u_k) - U) exp(-Delta_k / tau_f)

    ``u`` relaxes to ``U`` between spikes; ``f = U`` gives ``"tm"``, ``f = 0`` gives ``"depression"``.
``"depression"`` -- depression only (:class:`DepressionParams`: ``U, tau_d``; Tsodyks & Markram
    1997, PNAS 94:719): ``u_k = U`` for every spike.
``"srp"`` -- the spike-response plasticity model of Rossbroich, Trotter & Naud (2021)
    (:class:`SRPParams`: ``b, a1, a2, a3``), a linear-nonlinear cascade: the past spikes,
    filtered by a sum of exponentials with fixed time constants ``tau_j`` (15, 100 and 650 ms, the
    values used there for the mossy-fibre data), pass through a sigmoid::

        r_k = sigmoid(b + sum_{i<k} sum_j (a_j / tau_j) exp(-(t_k - t_i) / tau_j))

    ``b`` sets the release at rest (``sigmoid(b)``) and the dynamic range; ``a_j`` [ms] are the
    kernel amplitudes (> 0 facilitating, < 0 depressing).  It was introduced because TM fits
    under-estimate the supralinear facilitation of hippocampal mossy fibres; it is linear in
    ``a_j`` inside the sigmoid, so its fits are well conditioned.

Why these: the three TM variants are what the short-term plasticity literature fits to
paired recordings (Markram et al. 1998; Gupta, Wang & Markram 2000, Science 287:273; Costa et
al. 2013; Rossbroich et al. 2021 use ``"tm4"``), and they are nested (``depression`` and ``tm``
inside ``tm4``), so a likelihood-ratio test or AIC says whether facilitation or a separate
increment is needed; SRP is the model that fits the strongly facilitating trains (real data
shipped with :mod:`jaxlif.fitting.data`) where TM does not.

Each model has a *constraint tree* (:mod:`jaxlif.constraints`) mapping its parameters to an
unconstrained space for gradient fits: ``U, f, U0`` in (0, 1) by a sigmoid, time constants
``> 0`` by ``exp`` (``> dt`` in the tutorial's Euler scheme), ``b, a_j`` unconstrained.
:func:`to_unconstrained` / :func:`from_unconstrained` apply it, so you can write your own loss.

Units: time constants and ``a_j`` [ms]; ``U0, U, f, b`` dimensionless.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import constraints as C
from jaxlif.plasticity import STPParams

__all__ = ["Model", "MODELS", "get_model", "TM4Params", "DepressionParams", "SRPParams",
           "to_unconstrained", "from_unconstrained", "SRP_TAUS_MS", "family_constraints",
           "family_release", "srp_model", "kernel_drive", "family_dim"]


class TM4Params(NamedTuple):
    """Tsodyks-Markram with a separate facilitation increment (model ``"tm4"``).

    Attributes:
        U: release at rest (baseline utilisation), in (0, 1).
        f: facilitation increment per spike, in (0, 1).
        tau_d: recovery time constant of the resources [ms].
        tau_f: relaxation time constant of ``u`` back to ``U`` [ms].
    """

    U: jax.typing.ArrayLike = 0.2
    f: jax.typing.ArrayLike = 0.2
    tau_d: jax.typing.ArrayLike = 200.0
    tau_f: jax.typing.ArrayLike = 200.0


class DepressionParams(NamedTuple):
    """Depression-only Tsodyks-Markram (model ``"depression"``).

    Attributes:
        U: release fraction per spike, in (0, 1).
        tau_d: recovery time constant of the resources [ms].
    """

    U: jax.typing.ArrayLike = 0.5
    tau_d: jax.typing.ArrayLike = 300.0


#: Time constants [ms] of the SRP kernel (Rossbroich et al. 2021, mossy-fibre fits).
SRP_TAUS_MS = (15.0, 100.0, 650.0)


class SRPParams(NamedTuple):
    """Spike-response plasticity (model ``"srp"``), kernel time constants :data:`SRP_TAUS_MS`.

    Attributes:
        b: baseline of the sigmoid (release at rest ``sigmoid(b)``), dimensionless.
        a1, a2, a3: kernel amplitudes [ms] of the 15, 100 and 650 ms exponentials.
    """

    b: jax.typing.ArrayLike = -1.0
    a1: jax.typing.ArrayLike = 0.0
    a2: jax.typing.ArrayLike = 0.0
    a3: jax.typing.ArrayLike = 0.0


def _decays(delta, tau):
    return jnp.exp(-delta / tau)


def _tm_family(U, f, tau_d, tau_f, delta):
    """Release ``(..., n)`` of the TM family from intervals ``delta (..., n-1)`` [ms]."""
    shape = jnp.broadcast_shapes(jnp.shape(U), jnp.shape(f), jnp.shape(tau_d), jnp.shape(tau_f),
                                 delta.shape[:-1])
    dtype = jnp.result_type(delta, U, float)
    U, f, tau_d, tau_f = (jnp.broadcast_to(jnp.asarray(x, dtype), shape)
                          for x in (U, f, tau_d, tau_f))
    d = jnp.moveaxis(jnp.broadcast_to(delta, shape + delta.shape[-1:]), -1, 0)

    def step(carry, dk):
        u, R = carry
        R_next = 1.0 - (1.0 - R * (1.0 - u)) * _decays(dk, tau_d)
        u_next = U + (u + f * (1.0 - u) - U) * _decays(dk, tau_f)
        return (u_next, R_next), u_next * R_next

    first = (U, jnp.ones(shape, dtype))
    _, rest = jax.lax.scan(step, first, d)
    return jnp.moveaxis(jnp.concatenate([(U * first[1])[None], rest]), 0, -1)


def _release_tm(p: STPParams, delta):
    return _tm_family(p.U0, p.U0, p.tau_d, p.tau_f, delta)


def _release_tm4(p: TM4Params, delta):
    return _tm_family(p.U, p.f, p.tau_d, p.tau_f, delta)


def _release_depression(p: DepressionParams, delta):
    return _tm_family(p.U, jnp.zeros_like(jnp.asarray(p.U, float)), p.tau_d, 1.0, delta)


def kernel_drive(jumps: jax.typing.ArrayLike, taus: jax.typing.ArrayLike,
                 delta: jax.Array) -> jax.Array:
    """The kernel sum at each spike of a train, ``sum_j jumps_j sum_{i<k} exp(-(t_k - t_i) / tau_j)``.

    Args:
        jumps: ``(..., J)`` jump of each kernel per spike (``a_j / tau_j`` of the SRP model).
        taus: ``(..., J)`` or ``(J,)`` time constants [ms] (may be traced: fitted time constants).
        delta: ``(..., n-1)`` inter-spike intervals [ms].

    Returns:
        ``(..., n)``: 0 at the first spike (from rest), then the exact recursion
        ``s_{k+1} = (s_k + jumps) exp(-Delta_k / tau)`` summed over the kernels.
    """
    dtype = jnp.result_type(delta, jumps, taus, float)
    jumps, taus = jnp.asarray(jumps, dtype), jnp.asarray(taus, dtype)
    shape = jnp.broadcast_shapes(jumps.shape[:-1], taus.shape[:-1], delta.shape[:-1])
    J = jumps.shape[-1]
    jumps = jnp.broadcast_to(jumps, shape + (J,))
    taus = jnp.broadcast_to(taus, shape + (J,))
    d = jnp.moveaxis(jnp.broadcast_to(delta, shape + delta.shape[-1:]), -1, 0)

    def step(state, dk):
        nxt = (state + jumps) * jnp.exp(-dk[..., None] / taus)       # kernel sum at next spike
        return nxt, jnp.sum(nxt, axis=-1)

    _, rest = jax.lax.scan(step, jnp.zeros(shape + (J,), dtype), d)
    return jnp.moveaxis(jnp.concatenate([jnp.zeros((1,) + shape, dtype), rest]), 0, -1)


def kernel_basis(taus: jax.typing.ArrayLike, delta: jax.Array) -> jax.Array:
    """The unit kernels' sums at each spike, ``sum_{i<k} exp(-(t_k - t_i) / tau_j)``,
    ``(..., n, J)``: :func:`kernel_drive` with ``jumps_j = 1`` for one kernel at a time, so that
    ``kernel_drive(jumps, taus, delta) == kernel_basis(taus, delta) @ jumps`` (up to rounding).
    With fixed time constants it depends on the data only: the fits compute it once per data set."""
    taus = jnp.asarray(taus, jnp.result_type(delta, taus, float))
    eye = jnp.eye(taus.shape[-1], dtype=taus.dtype)
    return jnp.stack([kernel_drive(eye[j], taus, delta) for j in range(taus.shape[-1])], axis=-1)


def _srp_release(b, amps, taus, delta):
    """``sigmoid(b + kernel_drive(amps / taus))``: ``b (...)``, ``amps, taus (..., J)`` [ms]."""
    dtype = jnp.result_type(delta, b, float)
    taus = jnp.asarray(taus, dtype)
    drive = kernel_drive(jnp.asarray(amps, dtype) / taus, taus, delta)
    return jax.nn.sigmoid(jnp.asarray(b, dtype)[..., None] + drive)


def _release_srp(p: SRPParams, delta):
    shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in p))
    amps = jnp.stack([jnp.broadcast_to(jnp.asarray(a, float), shape) for a in (p.a1, p.a2, p.a3)],
                     axis=-1)
    return _srp_release(jnp.broadcast_to(jnp.asarray(p.b, float), shape), amps,
                        jnp.asarray(SRP_TAUS_MS), delta)


def family_dim(family: str, taus: tuple = SRP_TAUS_MS, fit_taus: bool = False) -> int:
    """Length of the family's parameter vector: 4 (``U, f, tau_d, tau_f``) for ``"tm"``;
    ``1 + J`` (``b, a_1..a_J``), ``+ J`` fitted time constants, for ``"srp"``."""
    if family == "tm":
        return 4
    return 1 + len(taus) * (2 if fit_taus else 1)


def family_release(family: str, vec, delta, tie_f, zero_f, taus: tuple = SRP_TAUS_MS,
                   fit_taus: bool = False):
    """Release ``(..., n)`` of the family's parameter vector ``vec`` (constrained values).

    ``tie_f``/``zero_f`` (booleans, may be traced) turn ``"tm4"`` into ``"tm"``/``"depression"``.
    SRP: ``vec = (b, a_1..a_J[, tau_1..tau_J])`` with kernel time constants ``taus`` [ms] (the
    fitted ones from ``vec`` when ``fit_taus``).
    """
    if family == "srp":
        J = len(taus)
        amps = jnp.stack(list(vec[1:1 + J]), axis=-1)
        tau = jnp.stack(list(vec[1 + J:1 + 2 * J]), axis=-1) if fit_taus else jnp.asarray(taus)
        return _srp_release(vec[0], amps, tau, delta)
    U, f = vec[0], vec[1]
    f = jnp.where(tie_f, U, jnp.where(zero_f, 0.0, f))
    return _tm_family(U, f, vec[2], vec[3], delta)


@dataclasses.dataclass(frozen=True)
class Model:
    """A plasticity model for fits (see the module docstring).

    Attributes:
        name: ``"tm"``, ``"tm4"``, ``"depression"`` or ``"srp"``.
        params_type: its parameter NamedTuple.
        units: unit of each field (``""`` dimensionless).
        release: ``release(params, delta_ms (..., n-1)) -> (..., n)``, exact continuous time.
        starts: default starts (:func:`halton_starts`), one tuple of field values per start.
        citation: where the model comes from.
        family: ``"tm"`` (the three TM variants: one release rule ``(U, f, tau_d, tau_f)``) or
            ``"srp"``; fits of one family share one compiled program.
        coords: which entries of the family's 4-vector are this model's fields.
        tie_f, zero_f: ``f = U`` (``"tm"``) or ``f = 0`` (``"depression"``).
        taus: SRP kernel time constants [ms] (:func:`srp_model`); ``()`` for the TM family.
        fit_taus: the SRP time constants are fitted (fields ``tau1..tauJ``, started at ``taus``).
    """

    name: str
    params_type: type
    units: tuple
    release: Callable = dataclasses.field(compare=False, hash=False)
    starts: tuple = dataclasses.field(compare=False, hash=False)
    citation: str = dataclasses.field(default="", compare=False, hash=False)
    family: str = "tm"
    coords: tuple = ()
    tie_f: bool = False
    zero_f: bool = False
    taus: tuple = ()
    fit_taus: bool = False

    @property
    def dim(self) -> int:
        """Length of the family vector this model's fields sit in (:func:`family_dim`)."""
        return family_dim(self.family, self.taus, self.fit_taus)

    @property
    def fields(self) -> tuple:
        return self.params_type._fields

    @property
    def n_params(self) -> int:
        return len(self.fields)

    def constraints(self, dt: float | None = None) -> Any:
        """The constraint tree: ``(0, 1)`` for U-like fields, ``> 0`` (``> dt``) for time
        constants, unconstrained otherwise."""
        tau = C.greater_than(0.0 if dt is None else float(dt))
        by_unit = {"": C.unit_interval(), "ms": tau}
        if self.family == "srp":
            J = len(self.taus)
            return self.params_type(*([C.real()] * (1 + J) + [C.positive()] * (len(self.fields)
                                                                                - 1 - J)))
        return self.params_type(*(by_unit[u] for u in self.units))

    def family_vector(self, params) -> jax.Array:
        """The parameters as the family's vector (``U, f, tau_d, tau_f``, or ``b, a_1..a_J[,
        tau_1..tau_J]``) on a last axis, unused entries filled with a harmless value
        (``(..., dim)``; traceable)."""
        dtype = jnp.result_type(float)
        fields = [jnp.asarray(x, dtype) for x in params]
        shape = jnp.broadcast_shapes(*(f.shape for f in fields))
        fill = (_FILL["tm"] if self.family == "tm" else
                (0.0,) * (1 + len(self.taus)) + (tuple(self.taus) if self.fit_taus else ()))
        vec = [jnp.full(shape, v, dtype) for v in fill]
        for c, f in zip(self.coords, fields):
            vec[c] = jnp.broadcast_to(f, shape)
        if self.tie_f:
            vec[1] = vec[0]
        return jnp.stack(vec, axis=-1)

    def release_at_rest(self, params) -> jax.Array:
        """Release of the first spike of a train from rest (``U0``, ``U`` or ``sigmoid(b)``)."""
        if self.family == "srp":
            return jax.nn.sigmoid(jnp.asarray(params.b))
        return jnp.asarray(params[0])

    def flatten(self, params) -> jax.Array:
        """Fields stacked on a last axis ``(..., D)``."""
        return jnp.stack([jnp.asarray(x) for x in params], axis=-1)

    def unflatten(self, vec) -> Any:
        return self.params_type(*(vec[..., i] for i in range(self.n_params)))

    def theta_of(self, params, dt: float | None = None) -> jax.Array:
        """Unconstrained ``(..., D)`` vector of ``params``."""
        return self.flatten(to_unconstrained(params, dt=dt, model=self))

    def params_of(self, theta, dt: float | None = None):
        """Parameters from an unconstrained ``(..., D)`` vector."""
        return from_unconstrained(self.unflatten(theta), dt=dt, model=self)


#: Harmless values of unused family coordinates (f, tau_f of the depression model).
_FILL = {"tm": (0.5, 0.5, 100.0, 100.0), "srp": (0.0, 0.0, 0.0, 0.0)}


@dataclasses.dataclass(frozen=True)
class ScaledReal(C.Constraint):
    """An unconstrained parameter ``x = scale * theta`` (a real line measured in units of
    ``scale``).  The SRP fits use it so that one unconstrained unit of ``a_j`` [ms] is one unit
    of the sigmoid's argument per spike (``scale = tau_j``), as for ``b``: with ``theta = a_j``
    itself, a step that moves ``b`` by 1 moves ``a_3`` by 1/650 of that, and the first steps of
    a fit from a depressing start push ``b`` onto the saturated plateau (``b -> +inf``, release
    1 at every spike, no gradient left) before the kernel can change sign."""

    scale: float = 1.0

    def forward(self, theta):
        return self.scale * theta

    def inverse(self, x):
        return jnp.asarray(x, dtype=jnp.result_type(x, float)) / self.scale


def family_constraints(family: str, taus: tuple = SRP_TAUS_MS, fit_taus: bool = False):
    """Constraints of the family's vector: ``U, f`` in (0, 1), ``tau_d, tau_f > 0``; SRP ``b``
    real, ``a_j`` real in units of ``tau_j`` (:class:`ScaledReal`: one unit is a jump of 1 of
    the sigmoid's argument per spike), fitted ``tau_j > 0``."""
    if family == "tm":
        return [C.unit_interval(), C.unit_interval(), C.positive(), C.positive()]
    return ([C.real()] + [ScaledReal(scale=float(t)) for t in taus]
            + ([C.positive()] * len(taus) if fit_taus else []))


#: Bases of the Halton sequence, one per field.
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def _halton(n: int, base: int) -> np.ndarray:
    """First ``n`` points (from 1) of the van der Corput sequence in ``base``."""
    out = np.empty(n)
    for i in range(1, n + 1):
        f, r, x = 1.0, 0.0, i
        while x > 0:
            f /= base
            r += f * (x % base)
            x //= base
        out[i - 1] = r
    return out


def halton_starts(n: int, boxes) -> tuple:
    """``n`` starts spread over a box by a Halton sequence (bases 2, 3, 5, 7, 11, ...).

    ``boxes``: per field ``(kind, low, high)``, with kind ``"logit"`` (a value in (0, 1), spread
    uniformly in logit between ``low`` and ``high``), ``"log"`` (spread uniformly in log) or
    ``"lin"``.  Deterministic, and covering the box far more evenly than a product grid of the
    same size (which matters: with few data, the loss has separated minima).
    """
    cols = []
    for (kind, lo, hi), base in zip(boxes, _PRIMES):
        h = _halton(n, base)
        if kind == "logit":
            z = np.log(lo / (1 - lo)) + (np.log(hi / (1 - hi)) - np.log(lo / (1 - lo))) * h
            cols.append(1.0 / (1.0 + np.exp(-z)))
        elif kind == "log":
            cols.append(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * h))
        else:
            cols.append(lo + (hi - lo) * h)
    return tuple(tuple(float(v) for v in row) for row in np.stack(cols, axis=1))


_U_BOX = ("logit", 0.02, 0.92)
_TAU_D_BOX = ("log", 20.0, 3000.0)
_TAU_F_BOX = ("log", 5.0, 3000.0)


#: SRP start box: ``b`` in [-3, 1] (release at rest 0.05-0.73) and each kernel's jump of the
#: sigmoid's argument per spike, ``a_j / tau_j``, in [-0.4, 0.4] (``a_j`` within +-6, 40, 260 ms):
#: on 10 pulses at 20 or 100 Hz the argument stays within +-4.9 at every spike (release 0.007 to
#: 0.993), off the saturated plateaus; the fits cap it at +-5 on the data's own spike times
#: (:func:`jaxlif.fitting.trains.default_starts`).  The old box (``a_3`` up to +-1500 ms, ``b`` up
#: to 3) put 10-14 of 15 starts on a plateau where the release is 1 at every spike.
SRP_START_JUMP = 0.4
_SRP_STARTS = tuple(
    (b, *(j * t for j, t in zip(jumps, SRP_TAUS_MS))) for b, *jumps in halton_starts(
        15, (("lin", -3.0, 1.0),) + (("lin", -SRP_START_JUMP, SRP_START_JUMP),) * 3))


#: The start boxes of the TM family (:func:`halton_starts`): the default starts are the first
#: points of the Halton sequence over the box, :func:`start_candidates` more of the same sequence.
_TM_BOXES = {"tm": (_U_BOX, _TAU_D_BOX, _TAU_F_BOX),
             "tm4": (_U_BOX, _U_BOX, _TAU_D_BOX, _TAU_F_BOX),
             "depression": (_U_BOX, _TAU_D_BOX)}


#: The boxes the train fits screen their starts in (:func:`start_candidates`): for the models
#: with facilitation, the start boxes with ``U`` (and ``f``) down to 0.001.  Strongly
#: facilitating synapses have their optimum below the start box's 0.02 (the per-sweep
#: mossy-fibre data: ``U`` = 0.0024, ``f`` = 0.006 for ``tm4`` with the binomial variance);
#: screened in the start box, 8 of 15 ``tm4`` starts there started at a short ``tau_d`` and
#: ended in the no-depression limit (``U, f -> 0``), 29.8 log-likelihood units below, against 1
#: of 15 with this box (docs/fitting.md, Starts).  ``depression`` keeps its start box: without
#: facilitation a small ``U`` is the no-depression limit itself, and on facilitating data
#: (a stand-in of the mossy-fibre recordings) its starts screened from 0.001 all ended there,
#: 8 units below the best.
_SCREEN_U_BOX = ("logit", 0.001, 0.92)
_SCREEN_BOXES = {"tm": (_SCREEN_U_BOX, _TAU_D_BOX, _TAU_F_BOX),
                 "tm4": (_SCREEN_U_BOX, _SCREEN_U_BOX, _TAU_D_BOX, _TAU_F_BOX),
                 "depression": (_U_BOX, _TAU_D_BOX)}


def start_candidates(m: Model, n: int) -> np.ndarray | None:
    """``(n, n_fields)`` candidate starts of a TM-family model: the first ``n`` points of the
    Halton sequence over its screening box (``_SCREEN_BOXES``: the start box, with ``U`` and
    ``f`` from 0.001 for ``tm`` and ``tm4``); ``None`` for a model without such a box (SRP: its
    starts are capped on the data's spike times)."""
    box = _SCREEN_BOXES.get(m.name)
    if box is None or m.family != "tm":
        return None
    return np.array(halton_starts(int(n), box), dtype=float)


# Default starts: 2^k - 1 of them, so that one extra start gives a power of two lanes (the
# compiled program is shared with and without it).
MODELS: dict[str, Model] = {
    "tm": Model("tm", STPParams, ("", "ms", "ms"), _release_tm,
                halton_starts(15, _TM_BOXES["tm"]),
                "Tsodyks & Markram 1997; the tutorial's synapse", "tm", (0, 2, 3), tie_f=True),
    "tm4": Model("tm4", TM4Params, ("", "", "ms", "ms"), _release_tm4,
                 halton_starts(15, _TM_BOXES["tm4"]),
                 "Markram, Wang & Tsodyks 1998", "tm", (0, 1, 2, 3)),
    "depression": Model("depression", DepressionParams, ("", "ms"), _release_depression,
                        halton_starts(7, _TM_BOXES["depression"]),
                        "Tsodyks & Markram 1997", "tm", (0, 2), zero_f=True),
    "srp": Model("srp", SRPParams, ("", "ms", "ms", "ms"), _release_srp, _SRP_STARTS,
                 "Rossbroich, Trotter & Naud 2021", "srp", (0, 1, 2, 3), taus=SRP_TAUS_MS),
}


def _srp_name(taus: tuple, fit_taus: bool) -> str:
    if tuple(taus) == SRP_TAUS_MS and not fit_taus:
        return "srp"
    return "srp:" + ",".join(f"{t:g}" for t in taus) + (":fit" if fit_taus else "")


#: SRP models with other time constants, made by :func:`srp_model` (one per name).
_SRP_VARIANTS: dict = {}


def _srp_model(taus: tuple, fit_taus: bool) -> Model:
    J = len(taus)
    name = _srp_name(taus, fit_taus)
    if name == "srp":
        return MODELS["srp"]
    if name in _SRP_VARIANTS:
        return _SRP_VARIANTS[name]
    fields = ["b"] + [f"a{j + 1}" for j in range(J)] + ([f"tau{j + 1}" for j in range(J)]
                                                      if fit_taus else [])
    defaults = [-1.0] + [0.0] * J + (list(taus) if fit_taus else [])
    ptype = NamedTuple("SRPParams_" + name.replace("srp:", "").replace(",", "_")
                       .replace(":", "_").replace(".", "p"),
                       [(f, jax.typing.ArrayLike) for f in fields])
    ptype.__new__.__defaults__ = tuple(defaults)
    ptype.__doc__ = (f"SRP parameters with kernel time constants {list(taus)} ms"
                     f"{' (fitted, started there)' if fit_taus else ''}: b, a_j [ms]"
                     f"{', tau_j [ms]' if fit_taus else ''} (:func:`srp_model`).")
    starts = _srp_starts(taus, fit_taus)
    units = ("",) + ("ms",) * (len(fields) - 1)

    def release(p, delta):
        vec = list(p)
        shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in vec))
        vec = [jnp.broadcast_to(jnp.asarray(x, float), shape) for x in vec]
        return family_release("srp", vec, delta, False, False, taus=taus, fit_taus=fit_taus)

    m = Model(name, ptype, units, release, starts, "Rossbroich, Trotter & Naud 2021", "srp",
              tuple(range(len(fields))), taus=taus, fit_taus=fit_taus)
    _SRP_VARIANTS[name] = m
    return m


def _srp_starts(taus: tuple, fit_taus: bool) -> tuple:
    """SRP starts for any kernel time constants: the box of :data:`SRP_START_JUMP` (15 Halton
    points over ``b`` and the jumps ``a_j / tau_j``), fitted time constants started at ``taus``."""
    J = len(taus)
    pts = halton_starts(15, (("lin", -3.0, 1.0),) + (("lin", -SRP_START_JUMP, SRP_START_JUMP),) * J)
    return tuple((b, *(j * t for j, t in zip(jumps, taus)), *(taus if fit_taus else ()))
                 for b, *jumps in pts)


def srp_model(taus: Sequence[float] = SRP_TAUS_MS, fit_taus: bool = False) -> Model:
    """The SRP model with kernel time constants ``taus`` [ms] (any number, each > 0, distinct).

    ``fit_taus=True`` fits the time constants too (fields ``tau1..tauJ`` after ``b, a1..aJ``,
    started at ``taus``; each gets a profile interval).  The model is named
    ``"srp:15,100:fit"`` style (``"srp"`` for the default three fixed ones), and that name is
    accepted wherever a model name is (``get_model``, ``fit_stp_trains(model=...)``)::

        fit = jaxlif.fit_stp_trains(data, model=jaxlif.fitting.srp_model((20.0, 300.0), True))
    """
    arr = np.atleast_1d(np.asarray(taus, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or arr.size > len(_PRIMES) - 1:
        raise ValueError(f"taus={taus!r} must be 1 to {len(_PRIMES) - 1} time constants [ms]")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"taus={taus!r}: every time constant must be finite and > 0 ms")
    if len(set(arr.tolist())) != arr.size:
        raise ValueError(f"taus={taus!r} has a time constant twice")
    return _srp_model(tuple(float(t) for t in arr), bool(fit_taus))


def get_model(model: str | Model) -> Model:
    """The :class:`Model` named ``model`` (or ``model`` itself if it is one)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str) and model.startswith("srp:"):
        parts = model.split(":")
        try:
            taus = tuple(float(t) for t in parts[1].split(","))
        except ValueError:
            taus = None
        if taus is None or len(parts) > 3 or (len(parts) == 3 and parts[2] != "fit"):
            raise ValueError(f"model={model!r}: an SRP model with its own time constants is "
                             f"named 'srp:T1,T2,...' or 'srp:T1,T2,...:fit' (ms)")
        return srp_model(taus, len(parts) == 3)
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not one of {tuple(MODELS)} (or 'srp:T1,T2,...[:fit]')")
    return MODELS[model]


def _model_of(params, model) -> Model:
    if model is not None:
        m = get_model(model)
        if not isinstance(params, m.params_type):
            raise TypeError(f"params must be a {m.params_type.__name__} for model {m.name!r}, got "
                            f"{type(params).__name__}")
        return m
    for m in list(MODELS.values()) + list(_SRP_VARIANTS.values()):
        if isinstance(params, m.params_type):
            return m
    raise TypeError(f"params must be one of {[m.params_type.__name__ for m in MODELS.values()]}, "
                    f"got {type(params).__name__}")


def to_unconstrained(params: Any, *, dt: float | None = None, model: str | Model | None = None) -> Any:
    """Map model parameters to the unconstrained space (same pytree type, leaf by leaf).

    The model is found from the type of ``params`` (``STPParams`` -> ``"tm"``, ...).  ``dt``:
    time constants must exceed it (the tutorial's Euler scheme); ``None``: > 0.  Example::

        theta = to_unconstrained(TM4Params(0.1, 0.3, 200.0, 50.0))
        loss = lambda th: my_loss(from_unconstrained(th))
    """
    m = _model_of(params, model)
    return C.to_unconstrained(params, m.constraints(dt))


def from_unconstrained(theta: Any, *, dt: float | None = None, model: str | Model | None = None) -> Any:
    """Inverse of :func:`to_unconstrained` (the pytree type names the model)."""
    m = _model_of(theta, model)
    return C.from_unconstrained(theta, m.constraints(dt))
