"""Every public function (in the ``__all__`` of the package's modules) is fully annotated, and its
annotations resolve (``typing.get_type_hints``).  Imports only: no program is compiled."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

MODULES = ["jaxlif"] + ["jaxlif." + m for m in (
    "analysis", "batch", "constraints", "fitting", "grid", "inputs", "network", "neurons", "nma",
    "plasticity", "spike_stats", "stp_lif", "surrogates", "synapses", "cli")]


def _public_functions():
    """``(qualified name, function)`` for each distinct function named in a module's ``__all__``."""
    seen, out = set(), []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            f = getattr(module, attr, None)
            if inspect.isfunction(f) and f not in seen:
                seen.add(f)
                out.append((f"{f.__module__}.{f.__qualname__}", f))
    return out


FUNCTIONS = _public_functions()


def test_there_are_public_functions_to_check():
    assert len(FUNCTIONS) > 100


def test_every_public_function_annotates_its_parameters_and_return():
    missing = []
    for name, f in FUNCTIONS:
        sig = inspect.signature(f)
        bare = [p for p, v in sig.parameters.items()
                if v.annotation is inspect.Parameter.empty
                and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
        if sig.return_annotation is inspect.Signature.empty:
            bare.append("->")
        if bare:
            missing.append(f"{name}: {bare}")
    assert not missing, f"{len(missing)} public functions lack annotations:\n" + "\n".join(missing)


@pytest.mark.parametrize("name, f", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_annotations_resolve(name, f):
    hints = typing.get_type_hints(f)
    assert "return" in hints
