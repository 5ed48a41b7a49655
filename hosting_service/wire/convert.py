"""Conversion between wire objects (Spyne or zeep) and the dataclasses of :mod:`hosting_service.model`.

Conversion is generic and driven by the Spyne classes of :mod:`.types` (which mirror the XSD): model field
names are the XSD element names, so a complex value is converted field by field; a wrapper type (``UID``
-> ``<Uid>``...) becomes a plain ``str`` and back; an ``ArrayOfX`` becomes a plain list and back. Wire
values are read only by attribute access, so Spyne objects and zeep objects (and anything else with the
same attributes) convert alike.

Three directions:

* :func:`from_wire` (Spyne or zeep object -> model value),
* :func:`to_wire_dict` (model value -> the nested dicts/lists zeep accepts as arguments),
* :func:`to_spyne` (model value -> Spyne object of a given namespace, for Spyne responses).

:func:`args_from_wire` / :func:`args_to_wire` do the same for the arguments of one operation.
"""
from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any, Callable, Sequence, Union

from hosting_service import model
from hosting_service.states import State
from hosting_service.wire.types import (
    HOST,
    Operation,
    SpyneClass,
    array_item,
    base_primitive,
    children,
    is_complex,
    type_name,
    wrapped_child,
)

__all__ = ["from_wire", "to_wire_dict", "to_spyne", "args_from_wire", "args_to_wire", "wire_class"]

_MODEL_ENUMS: dict[str, type[enum.Enum]] = {"State": State, "StatusType": model.StatusType}
"""XSD enumerations that are Python enums in the model (XPathNodeType stays a plain ``str`` there)."""

WireType = Union[str, SpyneClass]
"""An XSD type name (``"ArrayOfUUID"``, ``"UID"``...) or a Spyne class of :mod:`.types`."""


def wire_class(target: Any) -> SpyneClass:
    """The Spyne class (HostService namespace) for a conversion target.

    ``target`` is a Spyne class (returned as is), an XSD type name, a model dataclass (``Rectangle`` ->
    ``Rectangle``), ``list[<dataclass>]`` (-> ``ArrayOf<dataclass>``), ``State`` or ``StatusType``. A
    ``list[str]`` or ``str`` is ambiguous on the wire (``ArrayOfUUID``? ``UID``?): name the XSD type.
    """
    if isinstance(target, str):
        return HOST[target]
    if isinstance(target, type) and hasattr(target, "get_type_name"):
        return target
    if typing.get_origin(target) is list:
        (item,) = typing.get_args(target)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return HOST["ArrayOf" + item.__name__]
    elif isinstance(target, type) and (dataclasses.is_dataclass(target) or target in _MODEL_ENUMS.values()):
        return HOST[target.__name__]
    raise TypeError(f"cannot tell the wire type of {target!r}; pass its XSD type name, e.g. 'ArrayOfUUID' or 'UID'")


# --- wire -> model ----------------------------------------------------------------------------------------

def from_wire(value: Any, target: Any) -> Any:
    """A Spyne or zeep value as a model value. ``target``: see :func:`wire_class`.

    Absent or nil becomes ``None``; inside a dataclass an absent member keeps the field's default (so
    missing arrays are empty lists). Examples: ``from_wire(result, list[ObjectLocator])``,
    ``from_wire(obj, Rectangle)``, ``from_wire(result, "UID") -> "1.2.3"``.
    """
    return _from_wire(value, wire_class(target))


def _from_wire(value: Any, cls: SpyneClass) -> Any:
    if value is None:
        return None
    item = array_item(cls)
    if item is not None:
        items = value if isinstance(value, (list, tuple)) else getattr(value, item.name, None)
        return [_from_wire(v, item.type) for v in items or ()]
    child = wrapped_child(cls)
    if child is not None:
        return value if isinstance(value, str) else getattr(value, child, None)
    name = type_name(cls)
    if is_complex(cls):
        fields = {}
        for member in children(cls):
            converted = _from_wire(getattr(value, member.name, None), member.type)
            if converted is not None:
                fields[member.name] = converted
        return getattr(model, name)(**fields)
    if name in _MODEL_ENUMS:
        return _MODEL_ENUMS[name](str(value))
    if base_primitive(cls) == "base64Binary" and isinstance(value, (list, tuple)):
        return b"".join(value)  # Spyne keeps binary values as a sequence of chunks
    return value


def args_from_wire(operation: Operation, values: Sequence[Any]) -> dict[str, Any]:
    """Keyword arguments (wire element names, model values) from an operation's deserialised arguments."""
    return {arg.name: _from_wire(v, arg.type) for arg, v in zip(operation.args, values)}


# --- model -> wire ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Builder:
    """How :func:`_to_wire` makes a complex value and a binary value in one target representation."""

    complex_value: Callable[[SpyneClass, dict], Any]
    binary: Callable[[bytes], Any]


_ZEEP = _Builder(lambda cls, fields: fields, lambda data: data)
_SPYNE = _Builder(lambda cls, fields: (cls.__orig__ or cls)(**fields), lambda data: [data])
"""Spyne instances are made of the declared class, not of its customised (minOccurs...) copy."""


def _to_wire(value: Any, cls: SpyneClass, build: _Builder) -> Any:
    if value is None:
        return None
    item = array_item(cls)
    if item is not None:
        return build.complex_value(cls, {item.name: [_to_wire(v, item.type, build) for v in value]})
    child = wrapped_child(cls)
    if child is not None:
        return build.complex_value(cls, {child: value})
    if is_complex(cls):
        fields = {}
        for member in children(cls):
            converted = _to_wire(getattr(value, member.name), member.type, build)
            if converted is not None:
                fields[member.name] = converted
        return build.complex_value(cls, fields)
    if isinstance(value, enum.Enum):
        return value.value
    if base_primitive(cls) == "base64Binary":
        return build.binary(bytes(value))
    return value


def to_wire_dict(value: Any, wire_type: WireType | None = None) -> Any:
    """A model value as the nested dicts and lists zeep accepts, e.g.
    ``{"ClassUID": {"Uid": "1.2"}, "ObjectDescriptors": {"ObjectDescriptor": [...]}}``.

    ``wire_type`` (XSD type name or Spyne class) is needed for lists of strings and wrapped strings
    (``to_wire_dict(["u1"], "ArrayOfUUID") == {"UUID": [{"Uuid": "u1"}]}``); it is inferred for
    dataclasses, lists of dataclasses, enums and plain scalars. ``None`` members are left out.
    """
    if wire_type is None:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            wire_type = "ArrayOf" + type(value[0]).__name__
        elif dataclasses.is_dataclass(value):
            wire_type = type(value).__name__
        elif isinstance(value, (list, tuple, dict)):
            raise TypeError("a list needs its wire type, e.g. to_wire_dict(values, 'ArrayOfUUID')")
        else:
            return value
    return _to_wire(value, wire_class(wire_type), _ZEEP)


def to_spyne(value: Any, wire_type: SpyneClass) -> Any:
    """A model value as an instance of the Spyne class ``wire_type`` (any namespace of :mod:`.types`)."""
    return _to_wire(value, wire_type, _SPYNE)


def args_to_wire(operation: Operation, **kwargs: Any) -> dict[str, Any]:
    """zeep keyword arguments for ``operation`` from model values: ``args_to_wire(APP.operations["GetData"],
    objects=[...], acceptableTransferSyntaxes=[...], includeBulkData=True)``. ``None`` arguments are left out."""
    known = {arg.name: arg.type for arg in operation.args}
    unknown = set(kwargs) - set(known)
    if unknown:
        raise TypeError(f"{operation.name} has no argument {', '.join(sorted(unknown))} (it takes: {', '.join(known) or 'none'})")
    return {name: _to_wire(v, known[name], _ZEEP) for name, v in kwargs.items() if v is not None}
