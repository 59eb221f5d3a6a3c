"""Write docs/api.md, the API reference, from the public objects' signatures and docstrings.

    python tools/api_docs.py            # rewrite docs/api.md
    python tools/api_docs.py --check    # exit 1 if docs/api.md is out of date

The reference is generated so that it cannot drift from the code; a test
runs ``--check``. Everything in ``fastbp.__all__`` is documented, classes
with their public methods and properties, plus the public functions of
fastbp.schedules and fastbp.callbacks that are not re-exported, the
picture functions of fastbp.plots, the scikit-learn estimators of
fastbp.sklearn with their public methods, and fastbp.chunks.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(os.path.dirname(HERE), "docs", "api.md")

INTRO = """# API reference

Generated from the docstrings by `tools/api_docs.py` (a test checks that it
is up to date): every public name of `fastbp`, with its signature and its
documentation. The maths and the conventions (W^l of shape (n_l, n_{l-1}),
batches as rows) are in the README's "The maths in brief"; worked examples
are in the other pages of this folder.
"""


def _signature(obj, name):
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def _doc(obj):
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "(undocumented)"


def _block(text):
    # numpydoc is plain text with aligned sections: keep it verbatim
    return "```text\n" + text + "\n```\n"


def _members(cls):
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, value, "property"
        elif isinstance(value, (classmethod, staticmethod)):
            yield name, value.__func__, "classmethod" if isinstance(value, classmethod) \
                else "staticmethod"
        elif inspect.isfunction(value):
            yield name, value, "method"
        elif inspect.isfunction(getattr(value, "fn", None)):
            # scikit-learn's available_if: a method that only some settings offer
            yield name, value.fn, "method"


def _entry(name, obj):
    """A function's or class's signature and documentation, a class's with its members."""
    kind = "class " if inspect.isclass(obj) else ""
    parts = [f"`{kind}{_signature(obj, name)}`\n", _block(_doc(obj))]
    if inspect.isclass(obj):
        for member, value, what in _members(obj):
            if what == "property":
                parts.append(f"### {name}.{member} (property)\n")
                parts.append(_block(_doc(value)))
            else:
                parts.append(f"### {name}.{member}\n")
                parts.append(f"`{_signature(value, member)}`\n")
                parts.append(_block(_doc(value)))
    return parts


def render():
    import fastbp
    from fastbp import callbacks, plots, schedules
    from fastbp import chunks
    from fastbp import sklearn as estimators

    parts = [INTRO]
    names = list(fastbp.__all__)
    extra = [("fastbp.schedules", schedules, n) for n in schedules.__all__
             if n not in names and inspect.isfunction(getattr(schedules, n))]
    extra += [("fastbp.callbacks", callbacks, n) for n in callbacks.__all__
              if n not in names and inspect.isfunction(getattr(callbacks, n))]
    extra += [("fastbp.plots", plots, n) for n in plots.__all__
              if inspect.isfunction(getattr(plots, n))]
    extra += [("fastbp.sklearn", estimators, n) for n in estimators.__all__]
    extra += [("fastbp.chunks", chunks, n) for n in chunks.__all__]
    parts.append("## Contents\n")
    for name in names:
        obj = getattr(fastbp, name)
        if inspect.isclass(obj) or callable(obj):
            parts.append(f"- [`fastbp.{name}`](#fastbp{name.lower()})")
    for module, _, name in extra:
        parts.append(f"- [`{module}.{name}`](#{module.replace('.', '').lower()}{name.lower()})")
    parts.append("")
    for name in names:
        obj = getattr(fastbp, name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
            continue
        parts.append(f"## fastbp.{name}\n")
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            bases = ", ".join(base.__name__ for base in obj.__bases__)
            parts.append(f"`class {name}({bases})`\n")
            parts.append(_block(_doc(obj)))
            continue
        parts.extend(_entry(name, obj))
    for module, mod, name in extra:
        parts.append(f"## {module}.{name}\n")
        parts.extend(_entry(name, getattr(mod, name)))
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/api.md differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            with open(OUTPUT, encoding="utf-8") as stream:
                current = stream.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{OUTPUT} is out of date: run python tools/api_docs.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "w", encoding="utf-8") as stream:
        stream.write(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
