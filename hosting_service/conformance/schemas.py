"""Validation of SOAP answers against the normative Annex B schemas (``wsdl/``).

A service's XSD does not import the schemas it refers to (``ArrayOfstring``...); its WSDL does, from an
inline schema. :func:`service_schema` builds the same set of imports around the shipped files, so that an
``<Op>Response`` element can be validated by itself.
"""
from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

XS = "http://www.w3.org/2001/XMLSchema"


@functools.lru_cache(maxsize=None)
def service_schema(wsdl_path: Path) -> etree.XMLSchema:
    """The schema of every element the WSDL at ``wsdl_path`` imports (its inline ``xsd:import``s)."""
    wsdl = etree.parse(str(wsdl_path))
    wrapper = etree.Element(f"{{{XS}}}schema", nsmap={"xs": XS})
    for imported in wsdl.iter(f"{{{XS}}}import"):
        location = (wsdl_path.parent / imported.get("schemaLocation")).resolve()
        etree.SubElement(wrapper, f"{{{XS}}}import", namespace=imported.get("namespace"), schemaLocation=location.as_uri())
    return etree.XMLSchema(wrapper)


def problems(schema: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Why ``element`` (copied out of its envelope) is not valid against ``schema``; empty when it is."""
    document = etree.ElementTree(etree.fromstring(etree.tostring(element)))
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
