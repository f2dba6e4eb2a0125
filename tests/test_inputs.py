"""Input generators: shapes, determinism per key, statistics with honest (6 sigma) bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from math import comb

import jaxlif
from jaxlif.inputs import _binomial_tail

#: The tail as the simulators evaluate it (inside their compiled programs): one program per ``n``
#: instead of one eager program per operation.
_tail = jax.jit(_binomial_tail, static_argnums=1)


def test_poisson_trains_shape_and_key_determinism():
    k = jax.random.key(0)
    a = jaxlif.poisson_trains(k, 20.0, 5, T=100.0, dt=0.1)
    b = jaxlif.poisson_trains(k, 20.0, 5, T=100.0, dt=0.1)
    c = jaxlif.poisson_trains(jax.random.key(1), 20.0, 5, T=100.0, dt=0.1)
    assert a.shape == (5, 1000) and a.dtype == jnp.bool_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("rate", [10.0, 300.0])
def test_poisson_trains_mean_count(rate):
    n, T, dt = 50, 2000.0, 0.1
    trains = np.asarray(jaxlif.poisson_trains(jax.random.key(3), rate, n, T=T, dt=dt))
    steps = trains.shape[1]
    p = rate * dt / 1000
    total = trains.sum()
    mean, sd = n * steps * p, np.sqrt(n * steps * p * (1 - p))
    assert abs(total - mean) < 6 * sd
    # trains are independent: pairwise correlation of counts in 10 ms bins is near zero
    bins = trains.reshape(n, -1, 100).sum(-1)
    c = np.corrcoef(bins)[np.triu_indices(n, 1)]
    assert abs(c.mean()) < 6 / np.sqrt(bins.shape[1] * c.size)


@pytest.mark.parametrize("n,p", [(80, 0.001), (20, 0.006), (5, 0.5), (3, 0.0), (4, 1.0)])
def test_binomial_tail_is_exact(x64, n, p):
    tail = np.asarray(_tail(np.float64(p), n))
    pmf = np.array([comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])
    want = np.array([pmf[k + 1:].sum() for k in range(n)])
    np.testing.assert_allclose(tail, want, rtol=1e-10, atol=1e-300)


def test_binomial_count_bisection_is_the_comparison_count():
    """``binomial_count`` bisects the tail instead of comparing with every entry: on non-increasing tails
    (``_binomial_tail`` makes them so, for any p and n, float32 included) its prefix length equals
    ``#{k : v <= tail[k]}``, also at ties, at v = 1 and with equal entries."""
    from jaxlif.inputs import _prefix_length
    count = jax.jit(lambda v, t: _prefix_length(v, t.shape[0], lambda k: t[k]))   # one program per n
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 80):
        tails = [np.asarray(_tail(np.float32(p), n)) for p in (0.0, 1e-4, 0.006, 0.3, 0.5, 0.97, 1.0)]
        tails += [np.sort(rng.choice([0.0, 0.25, 0.5, 1.0], n))[::-1].astype(np.float32)]   # ties, flats
        for tail in tails:
            assert np.all(np.diff(tail) <= 0), tail
            v = np.concatenate([[1.0, 2.0**-24], tail, np.nextafter(tail, 2), rng.uniform(0, 1, 200)])[:200]
            v = np.clip(v, 2.0**-24, 1.0).astype(np.float32)        # V = 1 - U takes values in [2^-24, 1]
            got = np.asarray(count(v, tail))
            np.testing.assert_array_equal(got, (v[:, None] <= tail[None, :]).sum(1))


def test_poisson_counts_follow_binomial():
    n, rate, dt = 80, 10.0, 0.1
    counts = np.asarray(jaxlif.poisson_counts(jax.random.key(5), rate, n, T=20000.0, dt=dt))
    p = rate * dt / 1000
    N = counts.size
    hist = np.bincount(counts.astype(int), minlength=4)[:4]
    expect = np.array([comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(4)]) * N
    # each of the first bins within 6 sigma of its binomial expectation
    assert np.all(np.abs(hist - expect) < 6 * np.sqrt(expect) + 1)
    assert abs(counts.mean() - n * p) < 6 * np.sqrt(n * p * (1 - p) / N)


def test_poisson_counts_edge_rates():
    zero = jaxlif.poisson_counts(jax.random.key(0), 0.0, 30, T=50.0, dt=0.1)
    full = jaxlif.poisson_counts(jax.random.key(0), 10000.0, 30, T=50.0, dt=0.1)
    assert float(np.asarray(zero).sum()) == 0.0
    np.testing.assert_array_equal(full, 30.0)


def test_regular_train_indices():
    tr = np.asarray(jaxlif.regular_train(40.0, T=250.0, dt=0.1))
    np.testing.assert_array_equal(np.flatnonzero(tr), np.arange(0, 2500, 250))


#: The white-noise generator in one compiled program (eagerly, its draw, checks and scaling compiled 17
#: one-operation programs, 2026-12-07).
_white_noise = jax.jit(jaxlif.white_noise_current, static_argnames=("T", "dt"))


def test_white_noise_statistics():
    mu, sig, dt = 20.0, 3.0, 0.1
    I = np.asarray(_white_noise(jax.random.key(2), mu, sig, T=5000.0, dt=dt), dtype=float)
    var = sig**2 * 1000 / dt
    n = I.size
    assert abs(I.mean() - mu) < 6 * np.sqrt(var / n)
    assert abs(I.var() / var - 1) < 6 * np.sqrt(2 / n)
    same = _white_noise(jax.random.key(2), mu, sig, T=5000.0, dt=dt)
    np.testing.assert_array_equal(I, np.asarray(same, dtype=float))


def test_sinusoidal_and_dc():
    I = np.asarray(jaxlif.sinusoidal_current(250.0, T=10.0, dt=1.0))
    np.testing.assert_allclose(I, 250 * (1 + np.sin(2 * np.pi * np.arange(10) / 10)), rtol=1e-6)
    np.testing.assert_array_equal(jaxlif.dc_current(5.0, T=1.0, dt=0.1), np.full(10, 5.0, np.float32))


def test_float64_on_request(x64):
    assert jaxlif.poisson_counts(jax.random.key(0), 10.0, 8, T=1.0, dt=0.1).dtype == jnp.float64
    # the output's type, traced without compiling the eager operations
    noise = jax.eval_shape(lambda: jaxlif.white_noise_current(jax.random.key(0), 0.0, 1.0, T=1.0, dt=0.1))
    assert noise.dtype == jnp.float64 and noise.shape == (10,)


def test_binomial_count_extreme_uniforms(monkeypatch):
    """U = 0 must give the smallest count (0 for small p), not a burst: V = 1 - U lies in (0, 1]."""
    from jaxlif.inputs import binomial_count

    def count(tail):      # a new function each time: traced (and compiled) with the uniform patched now
        return float(jax.jit(lambda t: binomial_count(jax.random.key(0), 3, t))(tail))

    tail = _tail(np.float32(0.001), 80)
    # the per-step uniform (jax.random.uniform(fold_in(key, step)) bit for bit: test below) replaced by a constant
    monkeypatch.setattr(jaxlif.inputs, "uniform_at", lambda key, step, shape, dtype: jnp.zeros(shape, dtype))
    assert count(tail) == 0.0
    top = 1.0 - 2.0**-24
    monkeypatch.setattr(jaxlif.inputs, "uniform_at", lambda key, step, shape, dtype: jnp.full(shape, top, dtype))
    assert count(tail) >= 3.0
    full = _tail(np.float32(1.0), 5)                              # p = 1: always all 5 trains
    monkeypatch.setattr(jaxlif.inputs, "uniform_at", lambda key, step, shape, dtype: jnp.zeros(shape, dtype))
    assert count(full) == 5.0


def test_per_step_uniforms_are_jax_random_bit_for_bit(x64):
    """``jaxlif._threefry.uniform_at(key, step, shape, dtype)``, the per-step uniforms of the Poisson inputs,
    equals ``jax.random.uniform(jax.random.fold_in(key, step), shape, dtype)`` bit for bit: its own threefry for
    typed float32 keys (eager, under jit and vmap over keys and steps), and jax.random itself otherwise
    (a legacy uint32 key, float64)."""
    from jaxlif._threefry import uniform_at
    keys = jax.random.split(jax.random.key(7), 3)
    steps = np.array([0, 1, 12345, 2**31 - 1], np.int32)

    @jax.jit
    def both(keys, steps):
        """For each shape, jax.random's uniforms and uniform_at's under vmap over keys and steps: one program
        (jax.random's vmapped eagerly and uniform_at's jitted per shape compiled 16 programs, 2026-12-07)."""
        out = []
        for shape in ((), (5,), (2, 3)):
            want = jax.vmap(lambda k: jax.vmap(lambda s: jax.random.uniform(jax.random.fold_in(k, s), shape,
                                                                            jnp.float32))(steps))(keys)
            got = jax.vmap(lambda k: jax.vmap(lambda s: uniform_at(k, s, shape, jnp.float32))(steps))(keys)
            out.append((want, got))
        return out

    for want, got in both(keys, steps):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(uniform_at(keys[0], 3, (4,), jnp.float32)),
                                  np.asarray(jax.random.uniform(jax.random.fold_in(keys[0], 3), (4,), jnp.float32)))
    legacy = jax.random.PRNGKey(3)
    for key, dtype in ((legacy, jnp.float32), (keys[1], jnp.float64)):
        np.testing.assert_array_equal(np.asarray(uniform_at(key, 9, (4,), dtype)),
                                      np.asarray(jax.random.uniform(jax.random.fold_in(key, 9), (4,), dtype)))
