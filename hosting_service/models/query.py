"""XPath 1.0 over models, with results typed as the standard's XPathNodeType (PS3.19 §8.3.4, §8.3.5).

**Namespaces.** A model is handed out in its Annex A namespace (it validates against the schema), but the
standard's example XPaths, ``/NativeDicomModel/DicomAttribute[@keyword="..."]/...``, carry no prefix,
and in XPath 1.0 an unprefixed name matches only elements in no namespace. So queries run on a
namespace-free view of the model (the same document without its default namespace declaration), and
element results are mapped back: each is serialized with the model's namespace declared on it, so what
the recipient gets is the infoset of the namespaced model. ``local-name()`` queries work either way.

**Results.** Each node of a node-set is one XPathNode: ``Element`` (its XML), ``Attribute`` (its value),
``Text`` (the text), ``Comment``, ``ProcessingInstruction``, ``Namespace`` (the URI) or ``Root`` (the
whole model, for ``/``). An XPath whose value is not a node-set (``count(...)``, ``string(...)``,
``boolean(...)``) has no node type in the standard; it answers one ``Text`` node with the value as
XPath's ``string()`` would write it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from lxml import etree

from hosting_service.errors import ClientError
from hosting_service.model import QueryResult, QueryResultInfoSet, XPathNode, XPathNodeInfoSet


@dataclass(frozen=True)
class Node:
    node_type: str
    """An XPathNodeType value."""
    value: str


def compile_xpaths(operation: str, xpaths: Iterable[str]) -> list[tuple[str, etree.XPath]]:
    """Each XPath compiled, or a :class:`ClientError` naming the first that is not XPath 1.0."""
    compiled = []
    for text in xpaths:
        try:
            compiled.append((text, etree.XPath(text, smart_strings=True)))
        except etree.XPathSyntaxError as exc:
            raise ClientError(f"{operation}: {text!r} is not an XPath 1.0 expression ({exc})") from None
    return compiled


def namespace_free(document: bytes, root_name: str, namespace: str) -> etree._Element:
    """The query view of a stored model (see the module docstring)."""
    declaration = f'<{root_name} xmlns="{namespace}"'.encode()
    start = document.find(declaration)
    if start < 0:
        raise ValueError("not a model document of this host")
    plain = document[:start] + f"<{root_name}".encode() + document[start + len(declaration):]
    return etree.fromstring(plain, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))


def with_namespace(plain_xml: bytes, root_name: str, namespace: str) -> bytes:
    """A document serialized from the namespace-free view, in its model's namespace again."""
    name = f"<{root_name}".encode()
    if not plain_xml.startswith(name):
        raise ValueError("unexpected serialization")
    return name + f' xmlns="{namespace}"'.encode() + plain_xml[len(name):]


def evaluate(operation: str, root: etree._Element, text: str, xpath: etree.XPath, namespace: str) -> list[Node]:
    """The nodes ``xpath`` selects in the namespace-free ``root``; an evaluation error (an unknown
    function, a type error) is the caller's mistake."""
    if text.strip() == "/":  # the document node, which lxml's XPath never returns
        return [Node("Root", _element_xml(root, namespace))]
    try:
        result = xpath(root)
    except etree.XPathError as exc:
        raise ClientError(f"{operation}: {text!r} cannot be evaluated ({exc})") from None
    if isinstance(result, list):
        return [_node(item, namespace) for item in result]
    return [Node("Text", _xpath_string(result))]


def _node(item, namespace: str) -> Node:
    if isinstance(item, etree._Comment):
        return Node("Comment", item.text or "")
    if isinstance(item, etree._ProcessingInstruction):
        return Node("ProcessingInstruction", etree.tostring(item, encoding="unicode", with_tail=False))
    if isinstance(item, etree._Element):
        return Node("Element", _element_xml(item, namespace))
    if isinstance(item, tuple):  # namespace::* gives (prefix, URI)
        return Node("Namespace", item[1])
    if getattr(item, "is_attribute", False):
        return Node("Attribute", str(item))
    return Node("Text", str(item))


def _element_xml(element: etree._Element, namespace: str) -> str:
    plain = etree.tostring(element, encoding="unicode", with_tail=False)
    name = f"<{element.tag}"
    return name + f' xmlns="{namespace}"' + plain[len(name):]


def _xpath_string(value) -> str:
    """XPath 1.0 ``string()`` of a number, boolean or string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value == int(value) else repr(value)
    return str(value)


def run_queries(operation: str, models: Iterable[tuple[str, etree._Element, str]], xpaths: list[str],
                max_bytes: int) -> list[tuple[str, str, list[Node]]]:
    """``(model, xpath, nodes)`` for every model ``(uuid, query view, namespace)``, then every XPath, in
    that order (model-major); a :class:`ClientError` once the answer would exceed ``max_bytes``."""
    compiled = compile_xpaths(operation, xpaths)
    budget, results = max_bytes, []
    for model, view, namespace in models:
        for text, xpath in compiled:
            nodes = evaluate(operation, view, text, xpath, namespace)
            budget -= sum(len(node.value) for node in nodes)
            if budget < 0:
                raise ClientError(f"{operation}: the answer would exceed {max_bytes} bytes; "
                                  "ask for fewer models or narrower XPaths")
            results.append((model, text, nodes))
    return results


def query_results(answers: list[tuple[str, str, list[Node]]]) -> list[QueryResult]:
    """QueryModel's answer: each node's infoset as XML text."""
    return [QueryResult(Model=model, XPath=text, Result=[XPathNode(NodeType=n.node_type, Value=n.value) for n in nodes])
            for model, text, nodes in answers]


def info_set_results(answers: list[tuple[str, str, list[Node]]]) -> list[QueryResultInfoSet]:
    """QueryInfoSet's answer: each node's infoset as bytes of the negotiated type (``text/xml``: UTF-8)."""
    return [QueryResultInfoSet(Model=model, XPath=text, Result=[
                XPathNodeInfoSet(InfoSetValue=n.value.encode("utf-8"), NodeType=n.node_type) for n in nodes])
            for model, text, nodes in answers]
