"""Compiled programs stored whole on disk (jaxlif._executables): stored, loaded back bit for bit,
keyed by shapes and static arguments, and never trusted blindly (damaged or foreign entries,
unnamed static arguments fall back to jax.jit)."""

import functools
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlif import _executables as E

ROOT = Path(__file__).resolve().parents[1]


@functools.partial(jax.jit, static_argnames=("n",))
def _prog(x, y, *, n):
    c = jax.lax.fori_loop(0, n, lambda i, c: jnp.sin(c) * y + c / 3, x)
    return c, jnp.sum(c), (c > 0)


def _same(a, b):
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture
def store(tmp_path):
    assert E.folder() is None          # off unless the command line turns it on
    E.enable(tmp_path)
    try:
        yield tmp_path
    finally:
        E.disable()


def _entries(folder):
    return sorted(folder.glob("*.exe"))


def test_stored_program_is_loaded_back_and_gives_the_same_bits(store):
    args = (jnp.linspace(-1.0, 1.0, 7), jnp.float32(0.7))
    ref = _prog(*args, n=5)
    before = E.stats()
    out = E.call(_prog, "tests._prog", args, dict(n=5))
    assert E.stats()["stored"] == before["stored"] + 1 and len(_entries(store)) == 1
    E._MEMO.clear()                                   # as a new process would
    again = E.call(_prog, "tests._prog", args, dict(n=5))
    assert E.stats()["loaded"] == before["loaded"] + 1
    assert _same(out, ref) and _same(again, ref)
    # new values reuse the entry; a new static argument or shape is a new entry
    args2 = (jnp.linspace(0.0, 2.0, 7), jnp.float32(-0.2))
    assert _same(E.call(_prog, "tests._prog", args2, dict(n=5)), _prog(*args2, n=5))
    assert len(_entries(store)) == 1
    E.call(_prog, "tests._prog", args, dict(n=6))
    E.call(_prog, "tests._prog", (jnp.zeros(3), jnp.float32(1.0)), dict(n=5))
    assert len(_entries(store)) == 3


def test_damaged_or_foreign_entries_are_not_used(store):
    args = (jnp.linspace(-1.0, 1.0, 4), jnp.float32(0.3))
    ref = _prog(*args, n=2)
    E.call(_prog, "tests._prog", args, dict(n=2))
    (entry,) = _entries(store)
    # an entry whose stored key differs (e.g. a hash collision) is never loaded
    key, payload, it, ot = pickle.loads(entry.read_bytes())
    entry.write_bytes(pickle.dumps((key + "x", payload, it, ot)))
    E._MEMO.clear()
    stats = E.stats()
    assert _same(E.call(_prog, "tests._prog", args, dict(n=2)), ref)
    assert E.stats()["loaded"] == stats["loaded"] and E.stats()["stored"] == stats["stored"] + 1
    # a damaged file: a cache miss, replaced by a good entry
    entry.write_bytes(b"not a pickle")
    E._MEMO.clear()
    assert _same(E.call(_prog, "tests._prog", args, dict(n=2)), ref)
    E._MEMO.clear()
    stats = E.stats()
    assert _same(E.call(_prog, "tests._prog", args, dict(n=2)), ref)
    assert E.stats()["loaded"] == stats["loaded"] + 1


def test_a_failed_write_leaves_no_file_and_still_returns_the_result(store, monkeypatch):
    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(E.pickle, "dump", broken_dump)
    args = (jnp.linspace(-1.0, 1.0, 5), jnp.float32(0.4))
    stats = E.stats()
    assert _same(E.call(_prog, "tests._prog", args, dict(n=3)), _prog(*args, n=3))
    assert E.stats()["not_stored"] == stats["not_stored"] + 1
    assert not any(store.iterdir())                  # neither an entry nor a temporary file


def test_static_arguments_without_a_stable_name_are_never_stored(store):
    @functools.partial(jax.jit, static_argnames=("f",))
    def apply(x, *, f):
        return f(x)

    stats = E.stats()
    out = E.call(apply, "tests.apply", (jnp.arange(3.0),), dict(f=lambda x: x + 1))
    assert np.array_equal(np.asarray(out), [1.0, 2.0, 3.0])
    assert E.stats()["fallback"] == stats["fallback"] + 1 and not _entries(store)
    # module-level jaxlif functions and functions that carry a _jaxlif_cache_id have names
    from jaxlif.fitting import ratio_fit, trains
    assert E._name(ratio_fit._objective) == "jaxlif.fitting.ratio_fit._objective"
    assert E._name(trains._objective("tm", False)) == "jaxlif.fitting.trains._objective('tm', False)"
    assert E._name(functools.partial(ratio_fit._objective, 1)) is not None
    assert E._name(np.sin) is None and E._name(lambda x: x) is None


def test_the_key_changes_with_the_source_and_the_settings(store, monkeypatch):
    args = (jnp.zeros(2), jnp.float32(1.0))
    key = E._key("tests._prog", dict(n=1), args)
    assert key == E._key("tests._prog", dict(n=1), (jnp.ones(2), jnp.float32(2.0)))
    assert key != E._key("tests._prog", dict(n=1), (jnp.zeros(2, jnp.int32), jnp.float32(1.0)))
    assert key != E._key("tests._prog", dict(n=1), (jnp.zeros(2), 1.0))     # a Python float: no key
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") + " --xla_dump_hlo_as_text")
    assert key != E._key("tests._prog", dict(n=1), args)
    monkeypatch.undo()
    E._source_digest.cache_clear()
    monkeypatch.setattr(E, "_source_digest", lambda: "another jaxlif")
    assert key != E._key("tests._prog", dict(n=1), args)


_CLI = [sys.executable, "-m", "jaxlif", "fit-stp", "--quiet", "--rates", "5", "10", "20", "40",
        "--ratios", "0.61", "0.45", "0.33", "0.27"]


@pytest.mark.slow
def test_second_fit_stp_process_loads_the_fit_loop_and_prints_the_same(tmp_path):
    """End to end: the first `jaxlif fit-stp` stores the optimiser loop, the second loads it (no
    tracing of the loop) and prints what the first printed (times
    aside)."""
    env = dict(os.environ, JAXLIF_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    first = subprocess.run(_CLI, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    assert len(list((tmp_path / "cache" / "executables").glob("*.exe"))) == 1
    probe = ("import runpy, sys, jaxlif._executables as E; sys.argv = ['jaxlif'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('jaxlif', run_name='__main__')\n"
             "finally:\n    print('STATS', E.stats(), file=sys.stderr)")
    second = subprocess.run([sys.executable, "-c", probe] + _CLI[3:], capture_output=True, text=True,
                            env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "'loaded': 1" in second.stderr and "'stored': 0" in second.stderr
    untimed = lambda out: re.sub(r"[0-9.]+ s\b", "_ s", out)  # noqa: E731
    assert untimed(second.stdout) == untimed(first.stdout)
