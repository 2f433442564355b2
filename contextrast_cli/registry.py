"""A small explicit registry: name -> builder, loud on duplicates and misses."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from contextrast_cli.errors import ConfigError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Maps names to builders.

    Args:
        kind: what the registry holds, used in messages (``"model"``).
        field: the config field that names an entry (``"model.name"``).
    """

    def __init__(self, kind: str, field: str) -> None:
        self.kind = kind
        self.field = field
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``fn`` under ``name``; raises on duplicates."""

        def add(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        """The entry for ``name``; a ConfigError listing the choices on a miss."""
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries))
            raise ConfigError(
                f"{self.field}: unknown {self.kind} {name!r}; choose one of: {choices}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
