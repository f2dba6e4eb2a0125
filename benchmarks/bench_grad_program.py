"""Cost of the recurrent network's mean-field gradient program: the first call (tracing, compiling, running)
in CPU-seconds, then the median time of one gradient and of one forward run, and one derivative value.

Run it once per checkout to compare two versions side by side, alternating, one core each::

    taskset -c 0 env PYTHONPATH=<checkout> python benchmarks/bench_grad_program.py

The network: ``ei_network`` with 200 E + 50 I neurons, p = 0.2, drive weight 1.2 nS; T = 500 ms, dt = 0.1 ms;
``jax.jit(jax.grad(loss))`` over the whole parameter tree, loss = E rate + I rate / 2 (spikes per step).
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from jaxlif import network as nw
from jaxlif.surrogates import fast_sigmoid


def main() -> None:
    warnings.simplefilter("ignore")          # the drive rates' zero gradient (expected) warns
    structure, params = nw.partition(nw.ei_network(jax.random.key(0), n_E=200, n_I=50, p=0.2, drive_weight=1.2))

    def loss(p, key):
        s = nw.simulate_network(key, structure, p, T=500.0, dt=0.1, spike_grad=fast_sigmoid(), record=False).spikes
        return s["E"].mean() + 0.5 * s["I"].mean()

    def median_time(fn) -> float:
        times = []
        for i in range(3):
            t = time.perf_counter()
            jax.block_until_ready(fn(params, jax.random.key(2 + i)))
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    grad, forward = jax.jit(jax.grad(loss)), jax.jit(loss)
    t = time.process_time()
    jax.block_until_ready(grad(params, jax.random.key(1)))
    first = time.process_time() - t
    jax.block_until_ready(forward(params, jax.random.key(1)))
    tg, tf = median_time(grad), median_time(forward)
    value = float(grad(params, jax.random.key(7)).populations["E"].drive.weight)
    print(f"first(compile+run) {first:.2f} cpu-s  grad {tg:.3f} s  forward {tf:.4f} s  ratio {tg / tf:.1f}  "
          f"dE/dw {value:.6g}")


if __name__ == "__main__":
    main()
