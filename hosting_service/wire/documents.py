"""The standard WSDL and XSD documents of a service, as served at ``<endpoint>?wsdl`` and beside it.

PS3.19 §8 tells implementers to change only the ``soap:address/@location`` of the WSDL, and JAX-WS (XIP)
applications build their proxies from ``hostURL?wsdl`` and call whatever address it holds. So the WSDL is
served byte for byte as shipped in the ``wsdl`` package except that one attribute value (string surgery,
so everything else stays byte-identical). Its imports are relative (``./Types.xsd``), so the four XSDs
must be served next to the endpoint: for ``http://h:p/<token>/HostService-20100825?wsdl``,
``./Types.xsd`` is ``http://h:p/<token>/Types.xsd``; :meth:`ServiceDocuments.schema` gives them by name.

The XSDs are served as shipped with one addition: the service XSD imports the namespaces of
``ArrayOfString.xsd`` and ``XPathNodeType.xsd`` without a ``schemaLocation``, and suds, which does not
look for them among the WSDL's other imports, then fails with ``TypeNotFound: ArrayOfstring``. The served
copy gives those two imports the location of the sibling file (``schemaLocation="./ArrayOfString.xsd"``),
a hint every other stack reads the same way; the WSDL itself is untouched.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Optional

import wsdl
from hosting_service.wire.types import APP_NS, HOST_NS

XML_CONTENT_TYPE = "text/xml; charset=utf-8"

_ADDRESS = re.compile(rb'(<soap:address\s+location=")([^"]*)(")')
_IMPORT = re.compile(rb'schemaLocation="\./([^"/]+\.xsd)"')
_IMPORT_WITHOUT_LOCATION = re.compile(rb'(<xs:import namespace="([^"]*)")(\s*/>)')
_TARGET_NAMESPACE = re.compile(rb'<xs:schema\b[^>]*?\btargetNamespace="([^"]*)"')


class ServiceDocuments:
    """One service's WSDL (address rewritten on demand) and the XSDs it imports, read once."""

    def __init__(self, wsdl_path: Path):
        self._wsdl = wsdl_path.read_bytes()
        addresses = _ADDRESS.findall(self._wsdl)
        if len(addresses) != 1:
            raise ValueError(f"{wsdl_path} must have exactly one soap:address, found {len(addresses)}")
        schemas = {
            name.decode(): (wsdl_path.parent / name.decode()).read_bytes() for name in _IMPORT.findall(self._wsdl)
        }
        locations = {_target_namespace(schema): name.encode() for name, schema in schemas.items()}
        self._schemas = {name: _locate_imports(schema, locations) for name, schema in schemas.items()}

    @property
    def schema_names(self) -> list[str]:
        """File names of the imported XSDs, as the WSDL's relative ``schemaLocation``s name them."""
        return list(self._schemas)

    def wsdl(self, location: str) -> bytes:
        """The standard WSDL with ``soap:address/@location`` set to ``location``."""
        value = html.escape(location, quote=True).encode("utf-8")
        return _ADDRESS.sub(lambda m: m.group(1) + value + m.group(3), self._wsdl, count=1)

    def schema(self, name: str) -> Optional[bytes]:
        """An imported XSD by file name (``Types.xsd``), ``None`` if the WSDL imports no such file."""
        return self._schemas.get(name)


def _target_namespace(schema: bytes) -> bytes:
    found = _TARGET_NAMESPACE.search(schema)
    if found is None:
        raise ValueError("a shipped XSD has no targetNamespace")
    return found[1]


def _locate_imports(schema: bytes, locations: dict[bytes, bytes]) -> bytes:
    """``schema`` with a ``schemaLocation`` added to each ``xs:import`` that has none, where ``locations``
    (namespace -> sibling file name) knows the namespace; nothing else changes."""

    def locate(match: re.Match) -> bytes:
        name = locations.get(match[2])
        return match[0] if name is None else match[1] + b' schemaLocation="./' + name + b'"' + match[3]

    return _IMPORT_WITHOUT_LOCATION.sub(locate, schema)


DOCUMENTS: dict[str, ServiceDocuments] = {
    HOST_NS: ServiceDocuments(wsdl.HOST_SERVICE_WSDL),
    APP_NS: ServiceDocuments(wsdl.APPLICATION_SERVICE_WSDL),
}
"""The documents of each service, by target namespace."""

