"""The tolerant input layer in front of Spyne: any reasonable request shape in, the standard's shape out.

Real PS3.19 peers (CTK's QtSoap, XIP's JAX-WS, the WG23 drafts) do not send what the XSD says, and Spyne
reads a shape it does not expect as a silent ``None``. :class:`RequestNormalizer` therefore rebuilds each
request's operation element in the canonical shape (every element qualified in its schema's namespace,
children in ``xs:sequence`` order, canonical lexical values) from what it understands, walking the Spyne
classes of :mod:`.types`. It accepts:

* the operation element in any namespace (CTK uses ``"http://dicom.nema.org/PS3.19" + hostURL path``) and
  of any case; no, any or a wrong SOAPAction (the body decides);
* child elements unqualified or in any namespace, of any case, in any order, with ``xsi:type`` or SOAP-ENC
  attributes; ``newState`` for ``state`` and CTK's ``RequestedScreenArea`` for ``location``;
* array items of any element name, CTK's ``<preferredProtocols><string><Uid>file:</Uid>...</string>``
  nesting, and wrapper types given as bare text (``<classUID>1.2</classUID>``);
* ``StatusType`` as CTK's integer 0..3, ``DateOfBirth`` as DICOM DA (``19700101``) or ``xs:date``,
  booleans and enumerations in any case, ``text\\xml`` MIME types.

An empty simple element counts as absent (CTK sends empty strings for unset fields), and so does an empty
UID, UUID, MimeType or Modality (CTK's ``<TransferSyntaxUID><Uid/></TransferSyntaxUID>``: no such value is
ever empty). :meth:`RequestNormalizer.normalize_result` reads the answers of peers with the same rules
(:class:`client.soap.TolerantResponses`). Anything else it
cannot understand is a :class:`~hosting_service.errors.ClientError` naming the element and the value: an
unknown operation (the message lists the service's operations), an unknown or repeated element, a bad
value such as ``<state>BANANA</state>``, an array with more items than the configured cap. Nothing
becomes a silent ``None``.
"""
from __future__ import annotations

import base64
import datetime as _dt
import functools
import re
from typing import Optional

from lxml import etree

from hosting_service.errors import ClientError
from hosting_service.model import WRAPPERS
from hosting_service.wire.types import (
    Child,
    Operation,
    SpyneClass,
    WireTypes,
    array_item,
    base_primitive,
    children,
    enum_values,
    is_complex,
    is_many,
    is_nillable,
    type_name,
    wrapped_child,
)

_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

ARGUMENT_ALIASES = {"newstate": "state", "requestedscreenarea": "location"}
"""Other names of operation arguments (lower case): the WG23 draft's and XIP's ``newState``, the CTK
application's ``RequestedScreenArea`` (CTK's ``PreferredScreen`` differs from the standard only in case)."""

_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_BOOLEANS = {"true": "true", "1": "true", "false": "false", "0": "false"}
_DICOM_DA = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_XS_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(Z|[+-][0-9]{2}:[0-9]{2})?")
_XS_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?")


def _local(element: etree._Element) -> str:
    return element.tag.rpartition("}")[2]


def _show(text: str) -> str:
    """A peer's value for an error message: quoted, control characters escaped, length bounded."""
    return repr(text if len(text) <= 80 else text[:80] + "...")


@functools.lru_cache(maxsize=None)
def _members_by_key(cls: SpyneClass) -> dict[str, Child]:
    return {member.name.lower(): member for member in children(cls)}


class RequestNormalizer:
    """Turns the operation element of a request to one service into its canonical form; no array may have
    more than ``max_items`` items."""

    def __init__(self, types: WireTypes, max_items: int):
        self.types = types
        self.max_items = max_items
        self.service_name = types.namespace.rpartition("/")[2]
        self._operations = {name.lower(): op for name, op in types.operations.items()}
        self._arguments = {op.name: self._argument_keys(op) for op in types.operations.values()}

    @staticmethod
    def _argument_keys(operation: Operation) -> dict[str, Child]:
        by_key = {arg.name.lower(): arg for arg in operation.args}
        aliases = {alias: by_key[name.lower()] for alias, name in ARGUMENT_ALIASES.items() if name.lower() in by_key}
        return {**by_key, **aliases}

    def operation(self, payload: etree._Element) -> Operation:
        """The operation the element ``payload`` (the SOAP Body's child) asks for."""
        operation = self._operations.get(_local(payload).lower())
        if operation is None:
            raise ClientError(
                f"unknown operation {_local(payload)!r}; {self.service_name} offers: {', '.join(self.types.operations)}"
            )
        return operation

    def normalize(self, operation: Operation, payload: Optional[etree._Element]) -> etree._Element:
        """The canonical ``<Op>`` element for ``payload`` (``None``: the operation without arguments)."""
        wrapper = etree.Element(f"{{{self.types.namespace}}}{operation.name}")
        if payload is not None:
            self._fill(wrapper, payload, self._arguments[operation.name], self.types.namespace, operation.name, "")
        return wrapper

    def normalize_result(self, operation: Operation, result: etree._Element) -> etree._Element:
        """The canonical ``<Op>Response`` holding ``result``, a peer's ``<Op>Result`` of any shape the
        requests may have (array items of any name, SOAP-ENC and ``xsi:type`` attributes, any namespace)."""
        assert operation.result is not None, f"{operation.name} has no result"
        ns = self.types.namespace
        wrapper = etree.Element(f"{{{ns}}}{operation.name}Response")
        path = f"{operation.name}Response/{operation.result.name}"
        self._element(wrapper, result, operation.result, ns, path, "")
        return wrapper

    # --- complex content ----------------------------------------------------------------------------

    def _fill(self, target, source, members: dict[str, Child], ns: str, path: str, owner: str) -> None:
        """Copy the children of ``source`` that match ``members`` (lower-case name -> member) into
        ``target``, canonical and in sequence order. ``owner`` is the XSD type whose sequence this is."""
        found: dict[str, list] = {}
        for element in source.iterchildren(etree.Element):
            member = members.get(_local(element).lower())
            if member is None:
                expected = ", ".join(dict.fromkeys(m.name for m in members.values())) or "no elements"
                raise ClientError(f"{path}: unexpected element <{_local(element)}> (expected: {expected})")
            found.setdefault(member.name, []).append(element)
        if not found and source.text and source.text.strip():
            raise ClientError(f"{path}: expected elements, got the text {_show(source.text.strip())}")
        for member in dict.fromkeys(members.values()):
            elements = found.get(member.name, ())
            if len(elements) > 1 and not is_many(member.type):
                raise ClientError(f"{path}/{member.name}: the element appears {len(elements)} times")
            for element in elements:
                self._element(target, element, member, ns, f"{path}/{member.name}", owner)

    def _element(self, target, element, member: Child, ns: str, path: str, owner: str) -> None:
        cls = member.type
        tag = f"{{{ns}}}{member.name}"
        if element.get(_XSI_NIL) in ("true", "1"):
            if is_nillable(cls):
                etree.SubElement(target, tag, {_XSI_NIL: "true"})
            return
        if not is_complex(cls):
            value = self._scalar(element, cls, path, owner)
            if value is not None:
                etree.SubElement(target, tag).text = value
            return
        out = etree.SubElement(target, tag)
        inner_ns = cls.get_namespace()
        item = array_item(cls)
        wrapped = wrapped_child(cls)
        if item is not None:
            self._array(out, element, item, inner_ns, path, type_name(cls))
        elif wrapped is not None and len(element) == 0:
            value = self._scalar(element, children(cls)[0].type, path, type_name(cls))
            if value is not None:
                etree.SubElement(out, f"{{{inner_ns}}}{wrapped}").text = value
        else:
            self._fill(out, element, _members_by_key(cls), inner_ns, path, type_name(cls))

    def _array(self, target, source, item: Child, ns: str, path: str, owner: str) -> None:
        """Every element child is an item, whatever its name; a simple-typed item holding elements
        (CTK's ``<string><Uid>file:</Uid><Uid>http:</Uid></string>``) stands for its children."""
        elements = []
        for element in source.iterchildren(etree.Element):
            if not is_complex(item.type) and len(element):
                elements.extend(element.iterchildren(etree.Element))
            else:
                elements.append(element)
            if len(elements) > self.max_items:
                raise ClientError(f"{path}: more than {self.max_items} {item.name} items, the limit for an array")
        for index, element in enumerate(elements):
            self._element(target, element, item, ns, f"{path}/{item.name}[{index}]", owner)

    # --- simple content -----------------------------------------------------------------------------

    def _scalar(self, element, cls: SpyneClass, path: str, owner: str) -> Optional[str]:
        """The canonical lexical form of a simple value, ``None`` for an empty non-string value."""
        text = _text(element, path)
        kind = base_primitive(cls)
        values = enum_values(cls)
        if values is not None:
            return _enumeration(text, values, type_name(cls), path)
        if owner in WRAPPERS and not text.strip():
            return None
        if kind in ("string", "anyURI"):
            return text.replace("\\", "/") if owner == "MimeType" else text
        text = text.strip()
        if not text:
            return None
        if kind in _INT_RANGES:
            low, high = _INT_RANGES[kind]
            if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
                raise ClientError(f"{path}: {_show(text)} is not an xs:{kind} (an integer from {low} to {high})")
            return str(int(text))
        if kind == "boolean":
            if text.lower() not in _BOOLEANS:
                raise ClientError(f"{path}: {_show(text)} is not a boolean (true or false)")
            return _BOOLEANS[text.lower()]
        if kind == "dateTime":
            return _date_time(text, path)
        if kind == "base64Binary":  # in answers only (QueryInfoSet)
            compact = "".join(text.split())
            try:
                base64.b64decode(compact, validate=True)
            except ValueError:
                raise ClientError(f"{path}: {_show(text)} is not base64") from None
            return compact
        raise AssertionError(f"no rule for the simple type {type_name(cls)} at {path}")


def _text(element, path: str) -> str:
    """The text of a simple element; one level of element nesting (``<string><Uid>x</Uid></string>``) is
    unwrapped, more is an error."""
    if len(element) == 0:
        return element.text or ""
    inner = list(element.iterchildren(etree.Element))
    if len(inner) == 1 and len(inner[0]) == 0:
        return inner[0].text or ""
    names = ", ".join(f"<{_local(e)}>" for e in inner[:5])
    raise ClientError(f"{path}: expected a value, got the elements {names}")


def _enumeration(text: str, values: tuple[str, ...], name: str, path: str) -> Optional[str]:
    key = text.strip()
    if not key:
        return None
    for value in values:
        if value.lower() == key.lower():
            return value
    if name == "StatusType" and key.isdigit() and int(key) < len(values):
        return values[int(key)]  # CTK sends the enum's ordinal
    raise ClientError(f"{path}: {_show(key)} is not a {name} (one of {', '.join(values)})")


def _date_time(text: str, path: str) -> str:
    """An xs:dateTime from an xs:dateTime, an xs:date or a DICOM DA (``YYYYMMDD``) string."""
    da, date = _DICOM_DA.fullmatch(text), _XS_DATE.fullmatch(text)
    if da:
        value = f"{da[1]}-{da[2]}-{da[3]}T00:00:00"
    elif date:
        value = f"{date[1]}T00:00:00{date[2] or ''}"
    elif _XS_DATETIME.fullmatch(text):
        value = text
    else:
        value = None
    try:
        if value is None:
            raise ValueError
        _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClientError(
            f"{path}: {_show(text)} is not a date (xs:dateTime, xs:date or DICOM DA such as 19700101)"
        ) from None
    return value
