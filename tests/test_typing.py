"""Every public function and method of fastbp carries type hints.

mypy (run in CI over the whole package) checks that the hints agree with
the code; this test checks that the public API has them at all: every
parameter but self and cls, and the return.
"""

import inspect

import pytest

import fastbp
from fastbp import callbacks, cli, diagnostics, plots, schedules


def public_callables():
    seen = set()
    modules = [(fastbp, fastbp.__all__), (schedules, schedules.__all__),
               (callbacks, callbacks.__all__), (plots, plots.__all__),
               (diagnostics, getattr(diagnostics, "__all__", [])),
               (cli, ["main", "build_parser"])]
    for module, names in modules:
        for name in names:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj):
                if issubclass(obj, BaseException):
                    continue
                for member, value in vars(obj).items():
                    if member.startswith("_") and member != "__init__":
                        continue
                    if isinstance(value, property):
                        value = value.fget
                    elif isinstance(value, (classmethod, staticmethod)):
                        value = value.__func__
                    if inspect.isfunction(value):
                        yield f"{obj.__name__}.{member}", value
            elif inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj


CALLABLES = dict(public_callables())


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_public_callables_are_annotated(name):
    function = CALLABLES[name]
    signature = inspect.signature(function)
    missing = [parameter for parameter, value in signature.parameters.items()
               if parameter not in ("self", "cls")
               and value.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: parameters without a type hint: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, \
        f"{name}: no return type hint"


def test_the_package_says_it_is_typed():
    import importlib.resources
    files = importlib.resources.files("fastbp")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_kernels.pyi").is_file()
