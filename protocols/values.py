"""Frozen value classes that are cheap to make.

A ``@dataclass(frozen=True, slots=True)`` is the right shape for the protocol's values (CAN
frames, the parts of a :class:`~protocols.key_session.KeySession`): immutable, compared and
hashed by value. Its generated ``__init__`` stores each field with ``object.__setattr__``
(frozen classes forbid ``self.x = x``), and that generic call made constructing the ~20
values of one key read cost a third as much as decoding the read's frames with cantools.

:func:`fast_init` replaces that ``__init__`` with one that calls each slot's own descriptor
directly: the same signature, defaults and result, about half the cost. Everything else the
dataclass generated (``__eq__``, ``__hash__``, ``__repr__``, the frozen ``__setattr__``,
``dataclasses.replace``) is untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, applied above ``@dataclass(frozen=True, slots=True)``."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: fast_init is for frozen slots dataclasses without __post_init__")
    scope: dict[str, Any] = {}
    signature, body = [], []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: fast_init needs plain positional fields")
        if field.default is dataclasses.MISSING:
            signature.append(field.name)
        else:
            scope[f"_default_{field.name}"] = field.default
            signature.append(f"{field.name}=_default_{field.name}")
        scope[f"_set_{field.name}"] = cls.__dict__[field.name].__set__
        body.append(f"    _set_{field.name}(self, {field.name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(source, scope)  # noqa: S102 - compiled from the dataclass's own field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - replacing the method mypy cannot see through
    return cls
