"""Regression tests for the adversarial findings of issue 21 (one test or two per finding).

Small on purpose: the few programs compiled here share their shapes (T = 10 ms at dt = 0.1 ms).
"""

import functools
import os
import stat
import time
import warnings

import jax
import numpy as np
import pytest

import jaxlif
from jaxlif import _stability, inputs

KEY = jax.random.key(0)
T = 10.0


# ----------------------------------------------------------------------------------------------
# A huge number of trains: refused at once with the limit and the reason (was a hang)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: jaxlif.simulate_cond_lif_poisson(KEY, n_E=10**9, T=T),
    lambda: jaxlif.simulate_stp_lif_poisson(KEY, n_I=10**9, T=T),
    lambda: jaxlif.batch.simulate_cond_lif_batch(KEY, 2, n_E=10**9, T=T),
    lambda: jaxlif.poisson_counts(KEY, 10.0, 10**9, T=T, dt=0.1),
    lambda: inputs.binomial_step(KEY, 1, 0.1, 10**9),
])
def test_too_many_trains_is_refused_with_the_limit(call):
    with pytest.raises(ValueError, match=rf"=1000000000 trains is above the limit of {inputs.MAX_TRAINS}: "
                                         r"the per-step sampler"):
        call()


def test_the_limit_itself_is_accepted():
    assert inputs.check_n_trains("n_E", inputs.MAX_TRAINS) == inputs.MAX_TRAINS
    with pytest.raises(ValueError, match="n_E=1000001 trains"):
        inputs.check_n_trains("n_E", inputs.MAX_TRAINS + 1)


# ----------------------------------------------------------------------------------------------
# Reference inputs of the batch simulators: a traced invalid rate poisons (was: zeros)
# ----------------------------------------------------------------------------------------------

def test_batch_reference_inputs_poison_an_invalid_traced_rate():
    issue = jax.jit(lambda r: jaxlif.cond_lif_batch_inputs(KEY, 2, rate_E=r, rate_I=0.0, T=T)[0])
    bad = np.asarray(issue(-5.0))                                     # the issue's call: zeros before
    assert bad.shape == (2, 100) and np.isnan(bad).all()
    counts = jax.jit(lambda r: jaxlif.cond_lif_batch_inputs(KEY, 2, rate_E=r, rate_I=10.0, T=T)[0])
    mixed = np.asarray(counts(np.array([50.0, -5.0], np.float32)))    # only the invalid neuron is poisoned
    good = np.asarray(counts(np.array([50.0, 0.0], np.float32)))
    assert np.isnan(mixed[1]).all() and np.array_equal(mixed[0], good[0]) and good[0].sum() > 0
    trains = np.asarray(jax.jit(lambda r: jaxlif.batch.stp_lif_batch_trains(KEY, 2, rate_E=r, rate_I=0.0, n_E=2,
                                                                            n_I=1, T=1.0)[0])(np.array([-5.0, 0.0])))
    assert trains[0].all() and not trains[1].any()                   # NumPy indexing: nothing to compile
    with pytest.raises(ValueError, match=r"rate_E=.*-5.* Hz must be finite"):
        jaxlif.checked(counts)(np.array([50.0, -5.0], np.float32))


# ----------------------------------------------------------------------------------------------
# Forward Euler beyond its stable range: poisoned and warned (was: V = +213 mV, or 1e27 mV)
# ----------------------------------------------------------------------------------------------

def _one_volley(count):
    """Counts with one excitatory volley of ``count`` spikes at index 1 (g_bar = 1 nS: g_E[1] = count nS)."""
    n_E = np.zeros(100, np.float32)
    n_E[1] = count
    return n_E


def test_euler_factor_above_one_poisons_and_warns_below_one_is_untouched():
    # a = dt/tau_m (1 + g_E/g_L) = 0.01 (1 + g_E/10): 989 nS gives 0.999, 991 nS gives 1.001
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(1.0, 2.0, 0.0))
    zero = np.zeros(100, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = jaxlif.simulate_cond_lif(params, _one_volley(989), zero, dt=0.1, spiking=False)
    v = np.asarray(ok.v)
    # a <= 1: every sample lies between its predecessor and the equilibrium, so within [E_L, E_E]
    assert np.isfinite(v).all() and v.min() >= -75.0 - 1e-3 and v.max() <= 0.0 and v.max() > -30.0
    with pytest.warns(jaxlif.EulerUnstableWarning, match=r"simulate_cond_lif: forward Euler left its stable "
                                                             r"range: .*dt\*\(g_L\+g_E\+g_I\)/C"):
        bad = jaxlif.simulate_cond_lif(params, _one_volley(991), zero, dt=0.1, spiking=False)
    assert np.isnan(np.asarray(bad.v)).all() and np.asarray(bad.spikes).all()


def test_free_membrane_potential_blow_up_of_the_issue_is_poisoned_per_lane_under_jit_and_vmap():
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(1e3, 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_cond_lif_poisson"):
        r = jaxlif.simulate_cond_lif_poisson(KEY, params, spiking=False, T=T)
    assert np.isnan(np.asarray(r.v)).all()
    run = jax.jit(jax.vmap(lambda rate: jaxlif.simulate_cond_lif_poisson(KEY, rate_E=rate, T=T).v))
    v = np.asarray(run(np.array([10.0, 1e4], np.float32)))           # 1e4 Hz: the issue's +213 mV
    assert np.isnan(v[1]).all() and np.isfinite(v[0]).all() and v[0].max() < 0.0
    with pytest.raises(ValueError, match=r"forward Euler left its stable range.*largest factor"):
        jaxlif.checked(run)(np.array([10.0, 1e4], np.float32))
    with warnings.catch_warnings():                                  # the exponential integrator has no such limit
        warnings.simplefilter("error")
        v = np.asarray(jaxlif.simulate_cond_lif_poisson(KEY, params, spiking=False, T=T, integrator="exp_euler").v)
    assert np.isfinite(v).all() and float(np.max(v)) <= 0.0


def test_batch_simulators_poison_the_unstable_neurons_only():
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(np.array([2.4, 1e3], np.float32), 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_cond_lif_batch: 1 of 2 neurons"):
        b = jaxlif.batch.simulate_cond_lif_batch(KEY, 2, params, spiking=False, T=T, record=True)
    assert np.asarray(b.spike_count).tolist() == [0, -1]
    assert np.isnan(np.asarray(b.v)[1]).all() and np.isfinite(np.asarray(b.v)[0]).all()
    with warnings.catch_warnings():                                  # no such limit for the exponential integrator
        warnings.simplefilter("error")
        b = jaxlif.batch.simulate_cond_lif_batch(KEY, 2, params, spiking=False, T=T, integrator="exp_euler")
    assert np.asarray(b.spike_count).tolist() == [0, 0]
    stp = jaxlif.STPLIFParams()._replace(exc=jaxlif.SynParams(np.array([1e4, 2.4], np.float32), 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_stp_lif_batch: 1 of 2 neurons"):
        b = jaxlif.batch.simulate_stp_lif_batch(KEY, 2, stp, rate_E=1000.0, T=T)
    count = np.asarray(b.spike_count)
    assert count[0] == -1 and count[1] >= 0
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_stp_lif_poisson"):
        r = jaxlif.simulate_stp_lif_poisson(KEY, stp._replace(exc=jaxlif.SynParams(1e4, 2.0, 0.0)), rate_E=1000.0,
                                            T=T, record=False)
    assert np.asarray(r.spikes).all()


# ----------------------------------------------------------------------------------------------
# Executable cache: private folder; nothing loaded from where another user could write
# ----------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("n",))
def _cached_prog(x, *, n):
    return x * n + 1.0


def test_cache_folders_are_created_private(tmp_path):
    from jaxlif import _executables as E
    made = E.make_private_folder(tmp_path / "a" / "jaxlif" / "jax")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700 and E.insecure(made) is None
    assert E.enable(tmp_path / "exe") == tmp_path / "exe"
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "exe").st_mode) == 0o700
    finally:
        E.disable()


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_a_folder_others_can_write_is_refused(tmp_path, mode):
    from jaxlif import _cache, _executables as E
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    text = rf"shared: the folder is writable by other users \(mode 0{mode:o}\)"
    with pytest.warns(E.CacheSecurityWarning, match=text):
        assert E.enable(shared) is None
    with pytest.warns(E.CacheSecurityWarning, match="compilation cache off: .*writable by other users"):
        assert _cache.enable(shared) is None                       # JAX's cache is not switched on there
    assert E.folder() is None
    inner = shared / "mine"                                        # private, but others can swap it
    with pytest.warns(E.CacheSecurityWarning, match="a folder above the cache is writable by other users"):
        assert E.enable(inner) is None
    assert stat.S_IMODE(os.stat(inner).st_mode) == 0o700


def test_the_command_line_refuses_a_shared_cache_folder_in_one_line(tmp_path, monkeypatch, capsys):
    from jaxlif import cli
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [_fake_command(lambda args: 0)])
    assert cli.main(["fake", "--cache-dir", str(shared), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"jaxlif fake: compilation cache off: {shared}: the folder is "
                                               f"writable by other users"), err
    assert list(shared.iterdir()) == []


def test_an_entry_others_can_write_is_never_unpickled(tmp_path, monkeypatch):
    from jaxlif import _executables as E
    x = jax.numpy.arange(3.0)
    ref = _cached_prog(x, n=2)
    assert E.enable(tmp_path) is not None
    try:
        E.call(_cached_prog, "tests.adversarial._cached_prog", (x,), dict(n=2))
        (entry,) = tmp_path.glob("*.exe")
        assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600

        def no_unpickling(*a, **k):
            raise AssertionError("an unsafe entry was unpickled")

        cases = [lambda: os.chmod(entry, 0o666), lambda: os.chmod(tmp_path, 0o777)]
        if os.geteuid() == 0:                                      # root can give the file to another user
            cases.append(lambda: os.chown(entry, 4242, -1))
        for make_unsafe in cases:
            os.chmod(entry, 0o600)
            os.chmod(tmp_path, 0o700)
            os.chown(entry, os.geteuid(), -1)
            make_unsafe()
            E._MEMO.clear()                                        # as a new process would
            before = E.stats()
            with monkeypatch.context() as m:
                m.setattr(E.pickle, "load", no_unpickling)
                with pytest.warns(E.CacheSecurityWarning, match="a stored executable was not loaded"):
                    out = E.call(_cached_prog, "tests.adversarial._cached_prog", (x,), dict(n=2))
            assert np.array_equal(np.asarray(out), np.asarray(ref))
            assert E.stats()["fallback"] == before["fallback"] + 1 and E.stats()["loaded"] == before["loaded"]
            assert entry.exists()                                  # neither loaded nor replaced
        os.chmod(tmp_path, 0o700)
        os.chown(entry, os.geteuid(), -1)
        os.chmod(entry, 0o600)
        E._MEMO.clear()
        before = E.stats()
        E.call(_cached_prog, "tests.adversarial._cached_prog", (x,), dict(n=2))   # safe again: loaded
        assert E.stats()["loaded"] == before["loaded"] + 1
    finally:
        os.chmod(tmp_path, 0o700)
        E.disable()


# ----------------------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------------------

def test_ratio_curve_names_g_bar_and_tau_syn_as_passed():
    for kw, text in ((dict(g_bar=-1), r"^g_bar=-1 nS must be > 0"), (dict(tau_syn=0.05), r"^tau_syn=0.05 ms is below")):
        with pytest.raises(ValueError, match=text):
            jaxlif.ratio_curve(jaxlif.STPParams(), [10.0], **kw)


def test_csv_sweeps_with_different_spike_times_name_the_line_of_the_odd_sweep(tmp_path):
    from jaxlif.fitting import read_trains_csv
    rows = ["protocol,sweep,spike_time_ms,amplitude",             # line 1
            "a,1,0,1", "a,1,50,1", "a,1,100,1",                     # lines 2-4
            "a,2,0,1", "a,2,50,1", "a,2,120,1"]                     # lines 5-7: the third pulse differs
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"t.csv: line 7: protocol 'a' sweep '2' has a pulse at 120.0 ms where "
                                         r"sweep '1' has 100.0 ms"):
        read_trains_csv(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text("\n".join(rows[:6]) + "\n")   # sweep 2 lacks the last pulse
    with pytest.raises(ValueError, match=r"line 6: protocol 'a' sweep '2' ends before sweep '1''s pulse at 100.0 ms"):
        read_trains_csv(tmp_path / "t.csv")


@pytest.mark.parametrize("value", ["no", 0, None])
def test_flags_must_be_booleans(value):
    with pytest.raises(TypeError, match=rf"spiking must be True or False, got {value!r}"):
        jaxlif.simulate_cond_lif_poisson(KEY, spiking=value, T=T)
    with pytest.raises(TypeError, match=r"record must be True or False"):
        jaxlif.batch.simulate_cond_lif_batch(KEY, 2, record="yes", T=T)
    with pytest.raises(TypeError, match=r"spiking must be True or False"):
        jaxlif.simulate_lif(jaxlif.LIFParams(), np.zeros(10), dt=0.1, spiking=value)
    assert jaxlif._checks.check_flag("spiking", np.bool_(False)) is False


def test_batch_memory_probe_closes_proc_meminfo():
    import gc
    from jaxlif.batch import devices
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        have, what = devices._available_bytes(devices.batch_mesh())
        gc.collect()
    assert have > 0 and what
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


# ----------------------------------------------------------------------------------------------
# Ctrl-C on the command line: always exit 130 with one line, promptly
# ----------------------------------------------------------------------------------------------

from test_package import _fake_command  # noqa: E402  (one fake subcommand for the CLI tests)


#: First line of the children's code: Ctrl-C handled as in a terminal, even if the tests run as a
#: background job (which ignores SIGINT; the guard then rightly leaves it ignored).
_CTRL_C_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def test_ctrl_c_absorbed_by_a_library_loop_still_ends_with_130_and_one_line(monkeypatch, capsys):
    import signal
    from jaxlif import cli

    def handler(args):                   # what a fit's interval stage did: swallow it and carry on
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                time.sleep(0.01)         # the handler runs here
        except KeyboardInterrupt:
            pass
        warnings.warn("invalid value encountered in divide", RuntimeWarning)   # partial results
        print("a result")
        return 0

    monkeypatch.setattr(cli, "SUBCOMMANDS", [_fake_command(handler)])
    # as in a terminal: a suite started as a background job inherits SIGINT ignored, where the guard
    # (rightly) stays out of the way and the kill above would do nothing
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT)
        assert cli.main(["fake", "--no-cache", "--quiet"]) == cli.EXIT_INTERRUPTED
        err = capsys.readouterr().err
        assert err.strip().splitlines() == ["jaxlif fake: interrupted"], err
        assert signal.getsignal(signal.SIGINT) is before                  # restored
    finally:
        signal.signal(signal.SIGINT, outer)


def test_ctrl_c_ends_a_process_whose_main_thread_does_not_stop():
    # the main thread stands for one inside XLA (compiling) or in a loop that absorbs Ctrl-C
    script = ("import os, signal, sys, time, jaxlif.cli as C\n"
              "from jaxlif.cli import _common\n"
              "def spin(args):\n"
              "    tmp = os.path.join(sys.argv[1], '.out.partial-1.png'); open(tmp, 'w').close()\n"
              "    _common.PARTIAL_FILES.add(tmp)\n"
              "    signal.signal(signal.SIGINT, lambda *a: None)   # Ctrl-C never reaches this thread\n"
              "    print('running', flush=True)\n"
              "    while True:\n"
              "        time.sleep(0.05)\n"
              "def add(sub):\n"
              "    p = sub.add_parser('fake'); p.add_argument('--quiet', action='store_true')\n"
              "    p.set_defaults(func=spin)\n"
              "C.SUBCOMMANDS[:] = [add]\n"
              "sys.exit(C.main(['fake', '--no-cache', '--quiet']))\n")
    import signal
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_AS_IN_A_TERMINAL + script, folder],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "running"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 130, err
        assert err.strip().splitlines() == ["jaxlif fake: interrupted"], err
        assert os.listdir(folder) == []                              # the half-written output removed


@pytest.mark.slow
def test_fit_trains_stops_on_ctrl_c_while_compiling(tmp_path):
    """The issue's case, end to end: Ctrl-C while `jaxlif fit-trains --model all` compiles."""
    import signal
    import subprocess
    import sys
    rows = ["protocol,sweep,spike_time_ms,amplitude_pA"]
    rows += [f"p{p},{s},{k * (10 + 5 * p)},{100 + 30 * 0.8 ** k + s:.1f}"
             for p in range(3) for s in range(3) for k in range(8)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    code = _CTRL_C_AS_IN_A_TERMINAL + "import runpy; runpy.run_module('jaxlif', run_name='__main__')"
    proc = subprocess.Popen([sys.executable, "-c", code, "fit-trains", str(tmp_path / "t.csv"), "--model", "all",
                             "--no-cache", "--out", str(tmp_path / "fit.png")], stderr=subprocess.PIPE, text=True)
    try:
        assert "comparing" in proc.stderr.readline()
        time.sleep(1.0)                                              # compiling by now
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        err = proc.communicate(timeout=120)[1]
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert waited < 30, waited
    assert not (tmp_path / "fit.png").exists() and not list(tmp_path.glob(".fit*"))


def test_out_file_errors_name_the_users_path_and_long_names_work(tmp_path):
    import errno
    import json
    from jaxlif.cli import _common
    long = tmp_path / ("x" * 245 + ".json")                        # its temporary name was too long
    assert _common.write_json_file({"a": 1}, long) == long and json.loads(long.read_text()) == {"a": 1}

    def fail(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError) as err:
        _common._atomic(tmp_path / "x.png", fail)
    assert err.value.filename == str(tmp_path / "x.png") and err.value.errno == errno.ENOSPC
    assert not list(tmp_path.glob(".x.partial*")) and not _common.PARTIAL_FILES


# ----------------------------------------------------------------------------------------------
# Two runs into one output folder: the second stops (was: both "done", one replaced the other)
# ----------------------------------------------------------------------------------------------

def test_an_output_folder_is_claimed_by_one_run_at_a_time(tmp_path, capsys):
    import argparse
    from experiments import _common as C
    parser = argparse.ArgumentParser(prog="reproduce.py")
    out = tmp_path / "X"
    lock = tmp_path / ".X.lock"
    with C.claim_out(parser, out):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(SystemExit) as second:
            with C.claim_out(parser, out):
                pass
        assert second.value.code == 2
        assert lock.exists()                                          # the first run still holds it
    err = capsys.readouterr().err
    assert f"argument --out: {out} is being written by another run (process {os.getpid()}" in err
    assert not lock.exists()                                          # released
    lock.write_text("999999999\n")                                   # left by a killed run: taken over
    with C.claim_out(parser, out):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


@pytest.mark.slow
def test_two_reproduce_runs_started_at_once_into_one_folder(tmp_path):
    import subprocess
    import sys
    cmd = [sys.executable, "experiments/reproduce.py", "--quick", "--only", "lif_part1", "--out", str(tmp_path / "X")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    # (a loser that started only after the winner finished is refused because X then holds results)
    assert ("is being written by another run" in loser[2] or "already holds results" in loser[2]) \
        and "done" not in loser[1]
    assert (tmp_path / "X" / "summary.json").is_file() and not (tmp_path / ".X.lock").exists()
