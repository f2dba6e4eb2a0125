"""Host-to-device transfers that compile nothing.

``jnp.asarray(numpy_array)`` runs a small copy program, compiled once per shape and dtype in
every new process (about 10-20 ms each, with the lowering that a persistent-cache lookup needs);
``jax.device_put`` of a NumPy array of the target dtype is a plain transfer.  The fits assemble
their results from many small host arrays, so this is a visible part of a short command-line call.
:func:`host_argument` is the same for the arguments of a jitted function: it leaves a host value on the
host, and the function's own call transfers it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["device_array", "host_argument"]


def device_array(x, dtype=None) -> jax.Array:
    """``x`` as a ``jax.Array`` on the default device, by transfer only (no compiled program).

    ``dtype`` defaults to JAX's canonical form of ``x``'s NumPy dtype (float64 -> float32 unless
    x64 is on), as ``jnp.asarray`` would give.
    """
    a = np.asarray(x)
    dt = jax.dtypes.canonicalize_dtype(a.dtype if dtype is None else dtype)
    return jax.device_put(np.asarray(a, dtype=dt))


def host_argument(x, dtype=None):
    """An argument ``x`` of a jitted function, as ``jnp.asarray(x, dtype)`` would give it, with no compiled
    program: a JAX array (or tracer) goes through ``jnp.asarray``; a host value (NumPy array or scalar, a
    list) becomes a NumPy array, which the jitted call moves to the device with the same dtype rules
    (float64 becomes float32 unless 64-bit mode is on; the same values, bit for bit); a Python number
    without ``dtype`` stays as it is (weakly typed, as ``jnp.asarray`` makes it)."""
    if isinstance(x, jax.Array):
        return jnp.asarray(x, dtype)
    if dtype is None and isinstance(x, (bool, int, float)):
        return x
    return np.asarray(x, dtype)
