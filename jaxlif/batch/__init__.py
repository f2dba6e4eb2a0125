r"""Fast batched simulators: event-driven Poisson input and short-term plasticity, chunked and sharded.

The per-step simulators (:func:`jaxlif.simulate_cond_lif_poisson`,
:func:`jaxlif.simulate_stp_lif_poisson`) draw their inputs step by step, which is the tutorial's
algorithm and the reference here.  The simulators of this module compute *the same discrete-time
model* (the tutorial's ``run_LIF_cond`` and ``run_LIF_cond_STP``, docs/conventions.md 4.2-4.3;
forward Euler, same update order) but do
work per input *event* instead of per synapse and step:

**Poisson input as events.**  A train that spikes with probability ``p = rate*dt/1000`` at every
step is a renewal process whose gaps are geometric, ``P(gap > g) = (1-p)^g``.  For ``n`` pooled
static trains (:func:`simulate_cond_lif_batch`), only the per-step count matters (docs/conventions.md 4.4: the
synapses are static and share one time constant), and the pooled counts are i.i.d.
Binomial(n, p) per step: the steps with a non-zero count form a Bernoulli(q) process,
``q = 1 - (1-p)^n``, and the count at such a step is Binomial(n, p) conditioned on being
``>= 1``.  Each event costs one threefry-2x32 hash (gap and count); a run of 80 + 20 trains at
10 Hz draws about 970 events per neuron-second instead of 20000 per-step counts or 10^6
per-step Bernoulli numbers.  No ``(batch, trains, steps)`` tensor exists.  The events of a
window are drawn in blocks of a fixed size (one cumulative sum per block) and scattered into an
integer count buffer that the neuron scan reads row by row (one flat scatter per pass;
:mod:`~jaxlif.batch.kernels` holds such helpers shaped for XLA:CPU).  No array size depends on a rate or
a parameter value, so one compiled program serves every value (:mod:`~jaxlif.batch.pooled`).

**Event-driven STP.**  The Tsodyks-Markram state of a synapse does not depend on the
postsynaptic voltage and only changes its course at that synapse's own spikes: between two spikes
``k`` steps apart the Euler scheme multiplies ``u``, ``1 - R`` and ``g`` by ``a^(k-1)``
(:func:`jaxlif.plasticity.stp_decay`), then applies one spiking step (:func:`jaxlif.stp_step`).
So each synapse is advanced from spike to spike, and its conductance jump
``g_bar R^- u^+`` is added to the *summed* conductance ``g_E = sum_j g_j`` of its neuron, which
decays with the common ``tau_syn`` between inputs (``g_E[it+1] = g_E[it] - dt/tau_syn g_E[it] +
sum of the jumps at it+1``).  This equals the per-synapse Euler loop up to rounding
(associativity of the sum and ``a^k`` evaluated as ``exp(k log a)``): the tests hold it to 1e-9
in float64 on the same trains, with identical spikes (:func:`simulate_stp_lif_batch`).  A pass
takes the next spike of every synapse that has one in the window; once at most 1/8 of the
synapses still do, those are compacted into a small index set (in chunks of 1024 synapses or
more), so the work follows the number of spikes (about 1500 per neuron-second at 15 Hz) rather
than synapses x steps (10^6).

**Windows and chunks.**  Events are generated window by window (``window`` steps: about 1000
for static input, 2000 for plastic synapses) into a small buffer, then a ``lax.scan`` runs the
neuron over the window with :func:`jaxlif.cond_lif_step` (the core step, unchanged), folding the
requested online statistics (:class:`Stats`: rates, ISI CV, mean and std of v, mean conductances,
spike times; :mod:`~jaxlif.batch.stats`) into O(batch) accumulators.  The batch is processed
``batch_chunk`` neurons at a time per device (``lax.map``) and streamed through one compiled program
a slice at a time (``progress=``; :mod:`~jaxlif.batch.devices`), so memory is bounded by the chunk
and the O(batch) outputs, and the cost per neuron does not grow with the batch.  Every random draw is addressed by (key, neuron index, synapse or
population, event ordinal), never by position in a chunk, a window or on a device, so neither
changes which spikes a neuron receives; chunks and devices change no number at all (with
plastic synapses the window fixes the order in which coincident jumps are summed, and so the
rounding of ``g``).

**Devices.**  The batch axis is split over a one-axis :class:`jax.sharding.Mesh` (default: all
visible devices) with :func:`jax.shard_map`; each device simulates its own neurons.  The results
are identical to one device, bit for bit, for the same reason.

**Random numbers.**  The hash is threefry-2x32 with 20 rounds (Salmon et al. 2011), the
function behind ``jax.random``'s default generator, written with ``jax.numpy`` integer ops
(:mod:`jaxlif._threefry`, shared with the network's drive; tested bit for bit against
``jax.extend.random.threefry_2x32``) because XLA:CPU runs that form 3-4x faster than the
primitive; on GPUs the primitive is used, and the count buffer is int32 instead of int8
(:mod:`~jaxlif.batch.rng`, :mod:`~jaxlif.batch.pooled`): the same numbers either way.  Keys for each
stream come from the user's key with ``jax.random.fold_in`` and ``jax.random.bits``.  Uniforms are taken in ``(0, 1]``
(24 bits in float32, 53 in float64), so the laws are exact up to that resolution, the same
resolution that a per-step test ``uniform < p`` has.

**Reference paths.**  :func:`cond_lif_batch_inputs` returns the per-step counts that
:func:`simulate_cond_lif_batch` draws, and :func:`stp_lif_batch_trains` the spike trains that
:func:`simulate_stp_lif_batch` draws, so that ``jax.vmap(jaxlif.simulate_cond_lif)`` and
``jax.vmap(jaxlif.simulate_stp_lif)`` (the step-by-step tutorial scheme) can be run on exactly
the same input: that is how the tests check the fast paths.

**Validity.**  Concrete arguments are checked in Python (shapes by docs/conventions.md section 8:
``()`` shared, ``(batch,)`` per neuron, ``(batch, n)`` or ``(1, n)`` per synapse for STP parameters and
``g_bar`` of plastic synapses).  Traced values are checked in the program: an invalid rate drives no
events and every neuron with an invalid value is poisoned (docs/conventions.md section 9); every
event loop is bounded by the window length; outputs that cannot fit in memory are refused up
front; ``jax.grad`` raises naming the differentiable per-step simulators.

Shapes: ``batch`` neurons; traces ``(batch, n_steps)`` with time last; ``n_steps =
len(np.arange(0, T, dt))``.  Units: ms, mV, nS, pA, Hz.  dtype: float32 by default, float64
under ``jax.enable_x64(True)``.
"""

from jaxlif.batch.api import (cond_lif_batch_inputs, simulate_cond_lif_batch, simulate_stp_lif_batch,
                              stp_lif_batch_trains)
from jaxlif.batch.devices import batch_mesh, progress_bar
from jaxlif.batch.stats import BatchStats, Stats
from jaxlif.batch.windows import BatchResult

__all__ = [
    "BatchResult",
    "Stats",
    "BatchStats",
    "progress_bar",
    "simulate_cond_lif_batch",
    "simulate_stp_lif_batch",
    "cond_lif_batch_inputs",
    "stp_lif_batch_trains",
    "batch_mesh",
]
