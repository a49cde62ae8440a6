"""A name -> builder registry, one per concept (datasets, architectures, augmentations, ...).

The names themselves are declared once, without Keras, where the params schema reads them
(:mod:`refinelab.params.names`); a registry only accepts those, and :meth:`Registry.check_complete` fails
at import when one of them has no builder, so the schema and the builders cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

BuilderT = TypeVar("BuilderT", bound=Callable)


class Registry(Generic[BuilderT]):
    """Maps the names used in params.yaml to the functions that build them."""

    def __init__(self, kind: str, declared: Iterable[str], declared_in: str = "refinelab.params.names"):
        self.kind = kind
        self.declared = tuple(declared)
        self.declared_in = declared_in
        self._builders: dict[str, BuilderT] = {}

    def register(self, name: str) -> Callable[[BuilderT], BuilderT]:
        if name not in self.declared:
            raise ValueError(f"{self.kind} {name!r} is not declared: add it to {self.declared_in}")

        def decorator(builder: BuilderT) -> BuilderT:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def check_complete(self) -> None:
        """Every declared name has a builder (called once the registering module is loaded)."""
        if missing := [name for name in self.declared if name not in self._builders]:
            raise ValueError(f"{self.kind} {', '.join(missing)} declared in {self.declared_in} without a builder")

    def get(self, name: str) -> BuilderT:
        try:
            return self._builders[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._builders))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
