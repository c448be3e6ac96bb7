"""Build the API reference of bdc and the two table packages from their docstrings (pdoc).

    python docs/api/build.py                # HTML into docs/api/html/ (not committed)
    python docs/api/build.py -o /tmp/ref    # elsewhere

Every public module is documented: the packages and all their submodules whose names do not
start with ``_`` (pdoc alone would follow ``__all__`` and skip the submodules). The build fails
when a module cannot be imported or a public module, class, function or method has no
docstring. The test suite runs it (tests/test_docs.py), so a broken reference fails CI.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "public_modules", "missing_docstrings", "build", "main"]

#: The import packages whose reference is built.
PACKAGES = ("bdc", "bdc_tables_docdb", "bdc_tables_foraging")


def public_modules(packages: Sequence[str] = PACKAGES) -> list[str]:
    """The packages and their public submodules, imported (an import error propagates).

    Every name in a module's ``__all__`` is resolved here, so lazily loaded attributes (a
    module-level ``__getattr__``, as in ``bdc``) are in the module's namespace for pdoc (which
    reads only ``__dict__``), and a name that does not resolve fails the build.
    """
    names: list[str] = []
    for top in packages:
        package = importlib.import_module(top)
        names.append(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}.", onerror=_raise):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    for name in names:
        module = importlib.import_module(name)
        for attribute in getattr(module, "__all__", ()):
            try:
                value = getattr(module, attribute)
            except AttributeError as exc:
                raise ImportError(f"{name}.__all__ names {attribute!r}, which does not resolve: {exc}") from exc
            # a lazy attribute that its __getattr__ does not keep: pdoc reads only __dict__
            module.__dict__.setdefault(attribute, value)
    return names


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while walking the packages")


def _documented(namespace: Any, packages: Sequence[str]) -> Iterator[Any]:
    """The public classes, functions and methods defined by ``packages`` in a pdoc namespace."""
    import pdoc.doc

    for member in namespace.own_members:
        if member.name.startswith("_") or isinstance(member, (pdoc.doc.Variable, pdoc.doc.Module)):
            continue
        if not member.taken_from[0].split(".")[0] in packages:
            continue  # re-exported from a dependency: not ours to document
        yield member
        if isinstance(member, pdoc.doc.Class):
            yield from _documented(member, packages)


def missing_docstrings(modules: Sequence[str], packages: Sequence[str] = PACKAGES) -> list[str]:
    """Public modules and objects of ``modules`` without a docstring, by full name."""
    import pdoc.doc

    missing = []
    for name in modules:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "found in __all__ but does not resolve" is an error
            module = pdoc.doc.Module.from_name(name)
            if not module.docstring.strip():
                missing.append(name)
            missing.extend(m.fullname for m in _documented(module, packages) if not m.docstring.strip())
    return missing


def build(output: Path, packages: Sequence[str] = PACKAGES, *, search: bool = True) -> list[Path]:
    """Write the HTML reference to ``output``; returns the pages written.

    ``search=False`` leaves out the search index (most of the build's time; the tests do). Raises
    ``ValueError`` listing what lacks a docstring, and any import error as it is.
    """
    import pdoc
    import pdoc.render

    modules = public_modules(packages)
    missing = missing_docstrings(modules, packages)
    if missing:
        raise ValueError(f"{len(missing)} public objects have no docstring: " + ", ".join(missing))
    pdoc.render.configure(docformat="restructuredtext", footer_text="bdc API reference", search=search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pdoc warns about modules it sees twice (a package and its walk)
        pdoc.pdoc(*modules, output_directory=Path(output))
    return sorted(Path(output).rglob("*.html"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python docs/api/build.py [-o DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).resolve().parent / "html")
    args = parser.parse_args(argv)
    pages = build(args.output)
    print(f"{len(pages)} pages in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
