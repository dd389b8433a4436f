"""Equality, hash and repr of frozen dataclasses, written once.

`@dataclass` compiles `__eq__`, `__hash__` and `__repr__` from source for every class, and at
import that compiling is most of what a module of many small value types costs: the 31 event kinds
of `engine.event_types` alone were a tenth of a `chain start` (#14). A class that derives from
`Record` and is declared `@dataclass(frozen=True, eq=False, repr=False)` gets these three from here
instead, with the same meaning as the generated ones: equal when of the same class with equal
fields (compared as one tuple), hashed as that tuple, shown as `Name(field=value, ...)`; a
field's `compare`, `hash` and `repr` flags count as they do there. Frozen classes only: a mutable
dataclass with eq has no hash.
"""

from __future__ import annotations

from dataclasses import fields


class Record:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        compared = [f.name for f in fields(self) if f.compare]  # type: ignore[arg-type]
        return tuple(getattr(self, n) for n in compared) == tuple(getattr(other, n) for n in compared)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                          if (f.compare if f.hash is None else f.hash)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{self.__class__.__qualname__}({shown})"
