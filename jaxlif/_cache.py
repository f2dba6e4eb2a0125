"""Persistent compilation cache for the command line and the experiment scripts.

Compiling a simulation or a fit takes seconds; running it again with new *values* (rates,
targets, seeds) reuses the compiled program within one process, but a new process compiles
everything again.  JAX can keep compiled programs on disk; the ``jaxlif`` command and the
scripts in ``experiments/`` switch that on with :func:`enable`, so that a second invocation
with the same shapes starts in about a second.

Importing :mod:`jaxlif` never enables it: a library must not change a global JAX setting or
write to the user's disk behind their back.  In your own scripts call
``jax.config.update("jax_compilation_cache_dir", path)`` yourself, or
``jaxlif._cache.enable()`` for the same behaviour as the command line.

Where (first match wins):

1. the ``--cache-dir DIR`` option of ``jaxlif`` (``--no-cache`` switches it off);
2. the environment variable ``JAXLIF_CACHE_DIR`` (``off``, ``0`` or an empty value switch it off);
3. ``$XDG_CACHE_HOME/jaxlif/jax`` if ``XDG_CACHE_HOME`` is set, else ``~/.cache/jaxlif/jax``.

Entries are keyed by the compiled program, the JAX/jaxlib version and the device, so a stale
entry is never used; deleting the folder is always safe (it only costs one recompilation).

Entries are executable code, so the folder is created private (mode 0700), and a folder that
another user could write (not yours, group- or other-writable, or below a folder that lets others
swap it) is refused with a :class:`~jaxlif._executables.CacheSecurityWarning`: the programs are then
compiled as usual, without a cache (:func:`jaxlif._executables.insecure`).

The same call also keeps the fits' optimiser loop as a whole executable in the subfolder
``executables/`` (:mod:`jaxlif._executables`): JAX's cache still traces and lowers a program to
find it, which for that loop costs about 2 s per process; the stored executable skips both.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, TextIO

from jaxlif import _executables

__all__ = ["ENV_VAR", "default_cache_dir", "enable", "announce_compilation"]

#: Environment variable naming the cache folder (or ``off``).
ENV_VAR = "JAXLIF_CACHE_DIR"
_OFF = {"", "0", "off", "none", "false", "no"}


def default_cache_dir(environ: dict | None = None) -> Path | None:
    """The cache folder the command line uses by default, or ``None`` when switched off."""
    env = os.environ if environ is None else environ
    if ENV_VAR in env:
        value = env[ENV_VAR].strip()
        return None if value.lower() in _OFF else Path(value).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "jaxlif" / "jax"


def enable(path: str | os.PathLike | None = None, *, stream: TextIO | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`default_cache_dir`).

    Every compiled program is stored, however quick it was to compile (the point is a fast
    second start).  If the folder cannot be created or written, prints one line on ``stream``
    (default stderr) and carries on without a cache.

    Returns:
        the folder in use, or ``None`` if the cache is off.
    """
    import jax

    folder = default_cache_dir() if path is None else Path(path).expanduser()
    if folder is None:
        return None
    try:
        _executables.make_private_folder(folder)
        reason = _executables.insecure(folder)
        if reason is not None:
            warnings.warn(f"jaxlif: compilation cache off: {reason}; another user could put code there that "
                          f"this process would run. Use a private folder (--cache-dir, JAXLIF_CACHE_DIR; mode "
                          f"0700, your own)", _executables.CacheSecurityWarning, stacklevel=2)
            return None
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        print(f"jaxlif: compilation cache off: cannot write {folder} ({err.strerror or err})",
              file=stream or sys.stderr, flush=True)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _executables.enable(folder / "executables")
    return folder


def announce_compilation(message: str, *, delay_s: float = 0.5,
                          stream: TextIO | None = None) -> Callable[[], None]:
    """Print ``message`` once, on ``stream`` (default stderr), when JAX spends a while compiling.

    The line appears ``delay_s`` seconds into the first compilation that takes that long, while it
    runs: programs found in the persistent cache, and quick compilations, print nothing.  Returns
    a function that switches the announcement off (JAX keeps its listeners, which then do nothing).
    """
    import jax.monitoring

    lock = threading.Lock()
    state = {"active": True, "timer": None}

    def fire() -> None:
        with lock:
            if not state["active"]:
                return
            state["active"] = False
        print(message, file=stream or sys.stderr, flush=True)

    def start() -> None:
        with lock:
            if state["active"] and state["timer"] is None:
                state["timer"] = threading.Timer(delay_s, fire)
                state["timer"].daemon = True
                state["timer"].start()

    def cancel() -> None:
        with lock:
            if state["timer"] is not None:
                state["timer"].cancel()
                state["timer"] = None

    def on_duration(name: str, duration: float, **kw) -> None:
        if name == _LOWERED:          # lowering done: a cache lookup or a compilation follows
            start()
        elif name == _COMPILED:
            cancel()

    def on_event(name: str, **kw) -> None:
        if name == _CACHE_HIT:
            cancel()

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    def stop() -> None:
        with lock:
            state["active"] = False
        cancel()

    return stop


_LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILED = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
