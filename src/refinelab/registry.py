"""A name -> builder registry, one per concept (datasets, architectures, augmentations)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

BuilderT = TypeVar("BuilderT", bound=Callable)


class Registry(Generic[BuilderT]):
    """Maps the names used in params.yaml to the functions that build them."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, BuilderT] = {}

    def register(self, name: str) -> Callable[[BuilderT], BuilderT]:
        def decorator(builder: BuilderT) -> BuilderT:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

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
