"""Module constants built on first use, so that importing their module loads no heavy library.

The code location imports the modules that hold the sources' contracts and the publication
tables to declare its assets, but only a run uses their Arrow types, and pyarrow alone takes a
quarter of a second to import. Such a module builds those constants in one cached function and
assigns ``__getattr__ = built_on_first_use(__name__, build)`` (PEP 562): ``module.NAME`` and
``from module import NAME`` then work as if ``NAME`` were assigned at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def built_on_first_use(module: str, build: Callable[[], Mapping[str, object]]) -> Callable[[str], object]:
    """A module's ``__getattr__`` serving the names in what ``build()`` returns (cache ``build``)."""

    def __getattr__(name: str) -> object:
        # Python's own look-ups (the import system asks every module for `__path__`) never build.
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        try:
            return build()[name]
        except KeyError:
            raise AttributeError(f"module {module!r} has no attribute {name!r}") from None

    return __getattr__
