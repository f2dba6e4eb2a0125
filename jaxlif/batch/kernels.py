r"""Array helpers shaped for XLA:CPU, shared by the event loops of the batch simulators.

Each helper computes exactly what its plain ``jax.numpy`` form computes (same values, same order
of floating-point operations); it only chooses the form that XLA:CPU compiles and runs fastest:

- :func:`_scatter_add`: a 1-D scatter on the flattened buffer instead of an N-D scatter (about
  twice as fast per update on XLA:CPU, same order of updates);
- :func:`_cumsum_rows`: a running sum over rows as a sequential scan (``jnp.cumsum`` lowers to a
  quadratic reduce-window);
- :func:`_materialize`: evaluates a long elementwise chain once instead of once per consumer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__: list[str] = []  # private module of jaxlif.batch

_FLAT_LIMIT = 2 ** 31       # flat indices must fit in int32


def _materialize(f, *args):
    """Evaluate ``f(*args)`` into memory once.

    XLA:CPU fuses a long elementwise chain (here the hash) into every consumer and so recomputes
    it per consumer; the boundary of a loop whose trip count is not a compile-time constant stops
    that (XLA then hoists the loop-invariant body out of the loop as one fusion).
    """
    x = jax.tree.leaves(args)[0].ravel()[0]
    one = 1 + (x == x + 1).astype(jnp.int32)     # == 1 (f is pure: a second pass would change nothing)
    out = jax.eval_shape(f, *args)
    init = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out)
    return jax.lax.fori_loop(0, one, lambda _, __: f(*args), init)


def _cumsum_rows(start, x):
    """``start + cumsum(x, axis=0)`` as a sequential scan over rows: XLA:CPU lowers ``jnp.cumsum`` to a
    quadratic reduce-window and ``associative_scan`` compiles slowly; rows of C lanes are cheap."""
    def add(carry, row):
        carry = carry + row
        return carry, carry
    return jax.lax.scan(add, start, x)[1]


def _scatter_add(buf, index: tuple, values):
    """``buf.at[index].add(values)`` for one in-bounds integer index array per axis of ``buf``.

    Written as a 1-D scatter on the flattened buffer (row-major flat indices) when they fit in
    int32: XLA:CPU runs that form about twice as fast as the N-D scatter (0.26 against 0.54 ms for
    the 50000 updates of one pass over 500 x 100 synapses).  XLA:CPU applies the updates of either
    form one by one in row-major order, so coincident additions round the same; the tests compare
    the two bit for bit.
    """
    *index, values = jnp.broadcast_arrays(*index, values)
    if buf.size >= _FLAT_LIMIT:
        return buf.at[tuple(index)].add(values, mode="promise_in_bounds")
    flat = index[0].astype(jnp.int32)
    for i, n in zip(index[1:], buf.shape[1:]):
        flat = flat * n + i
    return buf.ravel().at[flat.ravel()].add(values.ravel(), mode="promise_in_bounds").reshape(buf.shape)
