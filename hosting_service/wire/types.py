"""Spyne models of the PS3.19 Annex B types, read from the normative XSD files themselves.

The classes are not written out by hand: :func:`make_types` reads the service's XSD (and the shared
``ArrayOfString.xsd`` / ``XPathNodeType.xsd``) shipped in the ``wsdl`` package and turns every
``xs:complexType`` and enumerated ``xs:simpleType`` into a Spyne model with the same name, namespace,
element names, ``xs:sequence`` order, ``minOccurs``/``maxOccurs`` and ``nillable``. What goes on the wire
therefore cannot drift from the standard, and the operations (request children, ``<Op>Result`` type) come
from the same file. The DataExchange types exist once per service namespace, as in the XSDs: :data:`HOST`
and :data:`APP`. ``ArrayOfstring`` (Microsoft Arrays namespace) and ``XPathNodeType``
(``System.Xml.XPath``) are shared by both.

The small helpers at the end (:func:`children`, :func:`array_item`, :func:`wrapped_child`,
:func:`enum_values`) are how :mod:`.convert` and :mod:`.normalize` walk these classes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeAlias

from lxml import etree
from spyne import AnyUri, Boolean, ByteArray, ComplexModel, DateTime, Integer32, Long, Unicode
from spyne.model.complex import ComplexModelMeta

import wsdl
from hosting_service.model import WRAPPERS

HOST_NS = "http://dicom.nema.org/PS3.19/HostService-20100825"
APP_NS = "http://dicom.nema.org/PS3.19/ApplicationService-20100825"
ARRAYS_NS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
XPATH_NS = "http://schemas.datacontract.org/2004/07/System.Xml.XPath"
XS_NS = "http://www.w3.org/2001/XMLSchema"

_XS = f"{{{XS_NS}}}"

SpyneClass: TypeAlias = Any
"""A Spyne model class (spyne ships no type information, so to mypy this is ``Any``)."""

PRIMITIVES: dict[str, SpyneClass] = {
    "string": Unicode,
    "int": Integer32,
    "long": Long,
    "boolean": Boolean,
    "dateTime": DateTime,
    "anyURI": AnyUri,
    "base64Binary": ByteArray,
}
"""The XSD built-in types the Annex B schemas use, and their Spyne models."""

_SCHEMA_FILES: dict[str, tuple[Path, str]] = {
    HOST_NS: (wsdl.HOST_SERVICE, "HostService-20100825.xsd"),
    APP_NS: (wsdl.APPLICATION_SERVICE, "ApplicationService-20100825.xsd"),
}
_SHARED_SCHEMAS = ("ArrayOfString.xsd", "XPathNodeType.xsd")


@dataclass(frozen=True)
class Child:
    """One ``xs:element`` of a sequence: its name, its (customised) Spyne type."""

    name: str
    type: SpyneClass


@dataclass(frozen=True)
class Operation:
    """A WSDL operation as its XSD wrapper elements describe it.

    ``args`` are the children of ``<Op>`` in sequence order; ``result`` is the child of ``<Op>Response``
    (``<Op>Result``), ``None`` for the void operations whose response is an empty element.
    """

    name: str
    args: tuple[Child, ...]
    result: Optional[Child]


class WireTypes:
    """The Spyne classes of one service namespace, by XSD type name, and the service's operations.

    ``types.Rectangle`` or ``types["Rectangle"]`` is the class; ``types["string"]`` etc. the primitives.
    """

    def __init__(self, namespace: str, classes: dict[str, SpyneClass], operations: dict[str, Operation]):
        self.namespace = namespace
        self._classes = classes
        self.operations = operations
        """Operation name -> :class:`Operation`, in the XSD's (= the WSDL portType's) order."""

    def __getitem__(self, type_name: str) -> SpyneClass:
        try:
            return self._classes[type_name]
        except KeyError:
            raise KeyError(f"no type {type_name!r} in {self.namespace}") from None

    def __getattr__(self, type_name: str) -> SpyneClass:
        try:
            return self.__dict__["_classes"][type_name]
        except KeyError:
            raise AttributeError(type_name) from None

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._classes

    def __repr__(self) -> str:
        return f"WireTypes({self.namespace!r})"


class _SchemaReader:
    """Builds Spyne classes from ``xs:complexType``/``xs:simpleType`` declarations, sharing across calls
    the classes of the schemas both services import (one Spyne class per XSD qualified name)."""

    def __init__(self) -> None:
        self._decls: dict[tuple[str, str], etree._Element] = {}
        self._built: dict[tuple[str, str], SpyneClass] = {}

    def load(self, path: Path) -> tuple[str, etree._Element]:
        root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
        tns = root.get("targetNamespace")
        for decl in root:
            if decl.tag in (_XS + "complexType", _XS + "simpleType"):
                self._decls.setdefault((tns, decl.get("name")), decl)
        return tns, root

    def resolve(self, ref: str, context: etree._Element) -> SpyneClass:
        """The Spyne class of a ``type="prefix:Name"`` reference made on ``context``."""
        prefix, _, local = ref.rpartition(":")
        ns = context.nsmap.get(prefix or None)
        if ns == XS_NS:
            try:
                return PRIMITIVES[local]
            except KeyError:
                raise ValueError(f"XSD built-in type xs:{local} has no Spyne model here") from None
        return self.build(ns, local)

    def build(self, ns: str, name: str) -> SpyneClass:
        key = (ns, name)
        if key not in self._built:
            decl = self._decls[key]
            if decl.tag == _XS + "simpleType":
                values = [e.get("value") for e in decl.iter(_XS + "enumeration")]
                self._built[key] = Unicode.customize(values=values, type_name=name, __namespace__=ns)
            else:
                self._built[key] = ComplexModelMeta(
                    name,
                    (ComplexModel,),
                    {"__namespace__": ns, "__type_name__": name, "_type_info": self.sequence(decl)},
                )
        return self._built[key]

    def sequence(self, complex_type: etree._Element) -> list[tuple[str, SpyneClass]]:
        """``(element name, customised Spyne type)`` for each ``xs:element`` of a complexType's sequence."""
        members = []
        for el in complex_type.iterfind(f"{_XS}sequence/{_XS}element"):
            attrs = {
                "min_occurs": int(el.get("minOccurs", "1")),
                "nillable": el.get("nillable") == "true",
            }
            if el.get("maxOccurs", "1") != "1":
                attrs["max_occurs"] = "unbounded" if el.get("maxOccurs") == "unbounded" else int(el.get("maxOccurs"))
            base = self.resolve(el.get("type"), el)
            if base.get_namespace() != XS_NS and not issubclass(base, ComplexModel):
                # customize() forgets the name of a derived simple type (the enumerations)
                attrs.update(type_name=base.get_type_name(), __namespace__=base.get_namespace())
            members.append((el.get("name"), base.customize(**attrs)))
        return members


_READER = _SchemaReader()


def make_types(namespace: str) -> WireTypes:
    """The Spyne classes and operations of the service whose target namespace is ``namespace``."""
    folder, main = _SCHEMA_FILES[namespace]
    for shared in _SHARED_SCHEMAS:
        _READER.load(folder / shared)
    tns, root = _READER.load(folder / main)
    assert tns == namespace, f"{main} declares {tns}, expected {namespace}"

    classes: dict[str, SpyneClass] = dict(PRIMITIVES)
    for shared_ns, name in ((ARRAYS_NS, "ArrayOfstring"), (XPATH_NS, "XPathNodeType")):
        classes[name] = _READER.build(shared_ns, name)
    for decl in root:
        if decl.tag in (_XS + "complexType", _XS + "simpleType"):
            classes[decl.get("name")] = _READER.build(namespace, decl.get("name"))

    messages: dict[str, list[Child]] = {  # the global elements with an anonymous complexType: <Op>, <Op>Response
        el.get("name"): [Child(n, t) for n, t in _READER.sequence(el.find(_XS + "complexType"))]
        for el in root.iterfind(_XS + "element")
        if el.find(_XS + "complexType") is not None
    }
    operations = {
        name: Operation(name, tuple(args), next(iter(messages[name + "Response"]), None))
        for name, args in messages.items()
        if name + "Response" in messages
    }
    return WireTypes(namespace, classes, operations)


HOST = make_types(HOST_NS)
"""The HostService types (all Annex B types, including Status) and its 12 operations."""

APP = make_types(APP_NS)
"""The ApplicationService types (no Status/StatusType) and its 10 operations."""


# --- walking the classes (cached: the classes never change and these run for every value on the wire) ---

def type_name(cls: SpyneClass) -> str:
    """The XSD type name of a (possibly customised) Spyne class."""
    return cls.get_type_name()


def is_complex(cls: SpyneClass) -> bool:
    return issubclass(cls, ComplexModel)


@functools.lru_cache(maxsize=None)
def children(cls: SpyneClass) -> tuple[Child, ...]:
    """The sequence of a complex type, in XSD order."""
    return tuple(Child(name, t) for name, t in cls._type_info.items())


def is_many(cls: SpyneClass) -> bool:
    """Whether an element of this (customised) type may repeat (``maxOccurs`` > 1)."""
    return cls.Attributes.max_occurs > 1


def is_nillable(cls: SpyneClass) -> bool:
    return bool(cls.Attributes.nillable)


@functools.lru_cache(maxsize=None)
def array_item(cls: SpyneClass) -> Optional[Child]:
    """The item element of an ``ArrayOfX`` type (its one repeating child), ``None`` for other types."""
    if not is_complex(cls):
        return None
    members = children(cls)
    if len(members) == 1 and is_many(members[0].type):
        return members[0]
    return None


@functools.lru_cache(maxsize=None)
def wrapped_child(cls: SpyneClass) -> Optional[str]:
    """The single child element name of a wrapper type (``UID`` -> ``Uid``...), ``None`` otherwise."""
    if is_complex(cls) and type_name(cls) in WRAPPERS:
        return WRAPPERS[type_name(cls)]
    return None


@functools.lru_cache(maxsize=None)
def enum_values(cls: SpyneClass) -> Optional[tuple[str, ...]]:
    """The enumeration of an enumerated simple type (State, StatusType, XPathNodeType), else ``None``."""
    if is_complex(cls) or not issubclass(cls, Unicode):
        return None
    values = getattr(cls.Attributes, "values", None)
    return tuple(values) if values else None


@functools.lru_cache(maxsize=None)
def base_primitive(cls: SpyneClass) -> Optional[str]:
    """The XSD built-in name (``int``, ``long``, ``boolean``...) a simple Spyne class derives from."""
    if is_complex(cls):
        return None
    for name, prim in PRIMITIVES.items():
        if name != "string" and issubclass(cls, prim):
            return name
    if issubclass(cls, Unicode):
        return "string"
    return None

