"""Compiled programs kept on disk whole, so that a second process skips tracing and lowering.

JAX's persistent compilation cache (:mod:`jaxlif._cache`) saves the *compilation* of a program,
but a new process still traces the Python function and lowers it to look the program up.  For the
optimiser loop of the fits that costs about 2 s of a 4 s ``jaxlif fit-stp`` call.  This module
keeps the compiled executable itself (``jax.experimental.serialize_executable``), keyed by
everything that determines it, so that a second process loads it and calls it directly.

Off by default: :func:`jaxlif._cache.enable` (the command line and the experiment scripts) turns
it on, in the subfolder ``executables/`` of the compilation cache folder.  A library import never
writes to disk.

Key of an entry (any difference: a new entry).  The SHA-256 of every source file of the jaxlif
package, the Python, jax and jaxlib versions, the backend's platform and device kinds, the
device count, ``XLA_FLAGS``, the JAX settings that change how a program is traced
(``jax_enable_x64``, matmul precision, dtype promotion, PRNG implementation), the function's name,
its static arguments (functions by their module-level name, or their ``_jaxlif_cache_id``), and
the tree structure, shapes, dtypes and weak types of the arguments.  A function or static argument
without a stable name (a closure, a user's lambda) is never stored: the call goes through
``jax.jit`` as usual.

Safety.  An entry is written atomically and read only if its stored key equals the call's; a
program is stored only after a round trip (serialise, load, compare the outputs of one call) and it
is compiled with the persistent compilation cache switched off, because an executable that XLA:CPU
itself loaded from that cache cannot be serialised again.  Any error while reading, loading or
calling an entry falls back to ``jax.jit`` (the entry is then removed).  Deleting the folder is
always safe.

Security.  Entries are Python pickles holding native code: whoever can write the folder or an
entry can run code in your process.  So the folder is created private (mode 0700) and its files
0600, and nothing is read from a place another user could have written: before enabling the
folder, and before unpickling each entry, :func:`insecure` checks that the folder and the entry
belong to this user and are not group- or other-writable, and that no folder above it could let
another user swap it (writable by others without the sticky bit, or owned by another user but
root).  An unsafe folder is not used (a :class:`CacheSecurityWarning`; the programs are compiled by
``jax.jit`` as usual), and an unsafe entry is neither unpickled nor replaced (a warning, then
``jax.jit``).  :func:`jaxlif._cache.enable` applies the same rule to JAX's own compilation cache,
whose entries are native code too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
import stat
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

__all__ = ["enable", "disable", "folder", "call", "stats", "insecure", "make_private_folder",
           "CacheSecurityWarning"]


class CacheSecurityWarning(UserWarning):
    """A cache folder or entry that another user could have written was refused (module docstring)."""


def insecure(path: str | os.PathLike, *, entry: bool = False) -> str | None:
    """Why ``path`` (a cache folder, or with ``entry`` a file in one) is unsafe to load code from, or
    ``None`` when it is safe: it must belong to this user and not be group- or other-writable (an
    entry must also be a plain file, not a link), and each folder above it must not let another user
    replace it: owned by this user or root, and not writable by others unless sticky (like /tmp)."""
    me = os.geteuid()
    path = Path(os.path.abspath(path) if entry else os.path.realpath(path))   # a linked folder: its target
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"{path}: cannot be checked ({err.strerror or err})"
    what = "entry" if entry else "folder"
    if entry and not stat.S_ISREG(st.st_mode):
        return f"{path}: the {what} is not a plain file"
    if st.st_uid != me:
        return f"{path}: the {what} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path}: the {what} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    if entry:                       # its folder: by the folder's rule
        return insecure(path.parent)
    for parent in path.parents:
        try:
            pst = os.stat(parent)
        except OSError as err:
            return f"{parent}: cannot be checked ({err.strerror or err})"
        if pst.st_uid not in (me, 0):
            return f"{parent}: a folder above the cache belongs to another user (uid {pst.st_uid})"
        if pst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not pst.st_mode & stat.S_ISVTX:
            return (f"{parent}: a folder above the cache is writable by other users (mode "
                    f"{stat.S_IMODE(pst.st_mode):04o}, no sticky bit)")
    return None


def make_private_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) with mode 0700 for a new last folder; raises ``OSError``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)          # whatever the umask
    return p


def _refuse(reason: str, what: str) -> None:
    warnings.warn(f"jaxlif: {what}: {reason}; such a place lets another user run code in this process "
                  f"(cache entries are executable code). Compiling with jax.jit instead. Use a private "
                  f"folder (JAXLIF_CACHE_DIR, --cache-dir; mode 0700, your own).", CacheSecurityWarning,
                  stacklevel=3)

_STATE: dict[str, Any] = {"folder": None}
_MEMO: dict[str, Callable] = {}
_LOCK = threading.Lock()
#: Counters since the process started: entries loaded from disk, stored, compiled but not stored
#: (the round trip failed or the folder could not be written), and calls that fell back to jax.jit.
_STATS = {"loaded": 0, "stored": 0, "not_stored": 0, "fallback": 0}
_UNSAFE = object()      # marks "(_UNSAFE, reason)": an entry or folder refused by insecure()


def enable(path: str | os.PathLike) -> Path | None:
    """Keep executables in ``path`` (created private if needed); ``None`` if it cannot be written, or
    if another user could write it (then with a :class:`CacheSecurityWarning`)."""
    try:
        p = make_private_folder(path)
    except OSError:
        return None
    reason = insecure(p)
    if reason is not None:
        _refuse(reason, "stored executables not used")
        return None
    _STATE["folder"] = p
    return p


def disable() -> None:
    """Stop reading and writing executables (those already loaded stay in memory)."""
    _STATE["folder"] = None
    _MEMO.clear()


def folder() -> Path | None:
    """The folder in use, or ``None`` when off."""
    return _STATE["folder"]


def stats() -> dict[str, int]:
    """Entries loaded and stored, and calls that fell back to ``jax.jit``, in this process."""
    return dict(_STATS)


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _name(obj) -> str | None:
    """A stable name of a static argument, or ``None`` if it has none."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    cid = getattr(obj, "_jaxlif_cache_id", None)
    if isinstance(cid, str):
        return cid
    if isinstance(obj, functools.partial):
        parts = [_name(obj.func)] + [_name(a) for a in obj.args] + \
                [f"{k}={_name(v)}" for k, v in sorted(obj.keywords.items())]
        return None if None in parts else "partial(" + ",".join(parts) + ")"
    if isinstance(obj, tuple):
        parts = [_name(a) for a in obj]
        return None if None in parts else "(" + ",".join(parts) + ",)"
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(mod, str) and isinstance(qual, str) and mod.split(".")[0] == "jaxlif" \
            and "<" not in qual:
        return f"{mod}.{qual}"
    return None


def _environment() -> str:
    import jax
    import jaxlib

    devices = jax.devices()
    cfg = jax.config
    settings = [cfg.jax_enable_x64, cfg.jax_default_matmul_precision, cfg.jax_numpy_dtype_promotion,
                cfg.jax_default_prng_impl, cfg.jax_numpy_rank_promotion]
    return "|".join(map(str, [
        _source_digest(), sys.version_info[:3], jax.__version__, jaxlib.__version__,
        devices[0].platform, sorted({d.device_kind for d in devices}), len(devices),
        os.environ.get("XLA_FLAGS", ""), settings]))


def _key(name: str, static: dict, args: tuple) -> str | None:
    import jax

    names = {k: _name(v) for k, v in sorted(static.items())}
    if None in names.values():
        return None
    leaves, tree = jax.tree.flatten(args)
    avals = []
    for leaf in leaves:
        if not isinstance(leaf, jax.Array) or getattr(leaf, "committed", False) and \
                len(leaf.devices()) != 1:
            return None
        avals.append(f"{leaf.dtype}{list(leaf.shape)}{'w' if leaf.weak_type else ''}")
    return "\n".join([_environment(), name, repr(names), str(tree), ";".join(avals)])


def _path(key: str) -> Path:
    return _STATE["folder"] / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".exe")


def _load(key: str) -> Callable | None:
    from jax.experimental import serialize_executable as se

    path = _path(key)
    if not os.path.lexists(path):
        return None
    reason = insecure(path, entry=True)
    if reason is not None:
        return _UNSAFE, reason
    try:
        with open(path, "rb") as f:
            stored_key, payload, in_tree, out_tree = pickle.load(f)
        if stored_key != key:
            return None
        return se.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001: a damaged or foreign entry is only a cache miss
        _remove(path)
        return None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):     # already gone, or a read-only folder: nothing to undo
        path.unlink()


def _equal(a, b) -> bool:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if np.issubdtype(a.dtype, np.inexact):
        return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
    return bool(np.all(a == b))


def _compile_and_store(jitted, key: str, static: dict, args: tuple) -> Callable:
    import jax
    from jax.experimental import serialize_executable as se

    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        compiled = jitted.lower(*args, **static).compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
    tmp = None
    try:
        payload, in_tree, out_tree = se.serialize(compiled)
        loaded = se.deserialize_and_load(payload, in_tree, out_tree)
        same = [_equal(a, b) for a, b in zip(jax.tree.leaves(compiled(*args)),
                                             jax.tree.leaves(loaded(*args)))]
        if not all(same):
            _STATS["not_stored"] += 1
            return compiled
        path = _path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            pickle.dump((key, payload, in_tree, out_tree), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        _STATS["stored"] += 1
    except Exception:  # noqa: BLE001: storing is an optimisation; the compiled program still runs
        _STATS["not_stored"] += 1
        if tmp is not None:
            _remove(tmp)
    return compiled


def call(jitted, name: str, args: tuple, static: dict):
    """``jitted(*args, **static)``, through a stored executable when the folder is on.

    ``jitted`` is a ``jax.jit`` function whose static arguments are exactly ``static`` (keyword)
    and whose dynamic arguments are ``args`` (positional); ``name`` names it in the key.
    """
    if _STATE["folder"] is None:
        return jitted(*args, **static)
    key = _key(name, static, args)
    if key is None:
        _STATS["fallback"] += 1
        return jitted(*args, **static)
    with _LOCK:
        exe = _MEMO.get(key)
        if exe is None:
            reason = insecure(_STATE["folder"])
            exe = (_UNSAFE, reason) if reason is not None else _load(key)
            if isinstance(exe, tuple):           # another user could have written it: never unpickled
                _refuse(exe[1], "a stored executable was not loaded")
                _STATS["fallback"] += 1
                return jitted(*args, **static)
            if exe is not None:
                _STATS["loaded"] += 1
            else:
                exe = _compile_and_store(jitted, key, static, args)
            _MEMO[key] = exe
    try:
        return exe(*args)
    except Exception:  # noqa: BLE001: e.g. an argument placed on another device
        with _LOCK:
            _MEMO.pop(key, None)
        _STATS["fallback"] += 1
        return jitted(*args, **static)
