"""Host-to-device transfers that compile nothing.

``jnp.asarray(numpy_array)`` runs a small copy program, compiled once per shape and dtype in
every new process (about 10-20 ms each, with the lowering that a persistent-cache lookup needs);
``jax.device_put`` of a NumPy array of the target dtype is a plain transfer.  The fits assemble
their results from many small host arrays, so this is a visible part of a short command-line call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["device_array"]


def device_array(x, dtype=None) -> jax.Array:
    """``x`` as a ``jax.Array`` on the default device, by transfer only (no compiled program).

    ``dtype`` defaults to JAX's canonical form of ``x``'s NumPy dtype (float64 -> float32 unless
    x64 is on), as ``jnp.asarray`` would give.
    """
    a = np.asarray(x)
    dt = jax.dtypes.canonicalize_dtype(a.dtype if dtype is None else dtype)
    return jax.device_put(np.asarray(a, dtype=dt))
