"""Checks of a data source's Annex A models, shared by both directions of ``dicom-host conformance``.

The source is a :class:`client.data_exchange.DataExchangeClient`: the application's ApplicationService
(for ``conformance app``, on its outputs) or the host's HostService (for ``conformance host``, on its
inputs). :func:`check_models` asks for the objects as models of a class (PS3.19 §8.3.3) and judges:

* every model, fetched whole with QueryModel(``/``), validates against the Annex A RELAX NG schema of its
  class (shipped in :mod:`hosting_service.models`);
* QueryModel answers one QueryResult for every model and every XPath, in the order asked for (model-major,
  then XPath), each naming its model and XPath, and its nodes carry the right XPathNodeType and values
  (§8.3.4, §9.15). The expected nodes are found here, independently, by evaluating the XPaths on the
  model as fetched;
* QueryInfoSet answers the same nodes as bytes of the negotiated infoset type (§8.3.5);
* GetData on each bulk data UUID of a model (``BulkData/@uuid``, ``DataAt/@bulkDataUUID``) gives a locator
  whose bytes are there (§8.3.2, §9.5), as many as the model's own attributes claim where they state a size
  (:func:`_bulk_claims`);
* ReleaseModels answers (§8.3.7).

:func:`check_released` is the separate question of what a source answers for a released (or never issued)
model: the standard defines no fault for it (it defines no application faults at all), so the scenarios
that ask it are optional, and they only demand that no nodes of a model that no longer exists come back.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from lxml import etree

from client.data_exchange import TEXT_XML, DataExchangeClient, read_located
from client.soap import SoapCallError
from hosting_service.conformance.verdicts import NotApplicable, Violation
from hosting_service.located import UnreadableObject
from hosting_service.model import ModelSetDescriptor
from hosting_service.models import (ABSTRACT_IMAGE_MODEL, MODEL_NAMESPACES, MODEL_ROOTS, NATIVE_DICOM_MODEL,
                                    schema_path)

MODEL_NAMES = {NATIVE_DICOM_MODEL: "Native DICOM Model", ABSTRACT_IMAGE_MODEL: "Abstract Multi-Dimensional Image Model"}
SOP_INSTANCE_UID = '/NativeDicomModel/DicomAttribute[@tag="00080018"]'
XPATHS = {
    NATIVE_DICOM_MODEL: (f"{SOP_INSTANCE_UID}/Value", f"{SOP_INSTANCE_UID}/@vr", f"{SOP_INSTANCE_UID}/Value/text()"),
    ABSTRACT_IMAGE_MODEL: ("/AbstractImageDataSet/Dimension", "/AbstractImageDataSet/Dimension/@numberOfSamples"),
}
"""The XPaths asked of each model: one selecting elements, one attributes and (Native) one text nodes. They
are unprefixed, as the standard's examples are (§8.3.4): they address the model's elements by local name."""
ENCAPSULATED_OR_DEFLATED = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
Log = Callable[[str], None]


@functools.lru_cache(maxsize=None)
def _schema(class_uid: str) -> etree.RelaxNG:
    return etree.RelaxNG(file=str(schema_path(class_uid)))


@dataclass(frozen=True)
class Expected:
    node_type: str
    value: str


def _plain(document: etree._Element) -> etree._Element:
    """The model without namespaces, where the standard's unprefixed XPaths select its elements."""
    copy = etree.fromstring(etree.tostring(document), _PARSER)
    for element in copy.iter(etree.Element):
        element.tag = etree.QName(element).localname
    etree.cleanup_namespaces(copy)
    return copy


def _expected(plain: etree._Element, xpath: str) -> list[Expected]:
    found = plain.xpath(xpath)
    nodes = []
    for item in found if isinstance(found, list) else []:
        if isinstance(item, etree._Element):
            nodes.append(Expected("Element", "".join(item.itertext())))
        elif getattr(item, "is_attribute", False):
            nodes.append(Expected("Attribute", str(item)))
        else:
            nodes.append(Expected("Text", str(item)))
    return nodes


def _observed(node_type: str, value: str) -> Expected:
    """An answered node as comparable with :class:`Expected`: an Element's infoset is XML, compared by its text."""
    if node_type == "Element":
        try:
            return Expected("Element", "".join(etree.fromstring(value.encode("utf-8"), _PARSER).itertext()))
        except etree.LxmlError:
            return Expected("Element", f"(not XML) {value[:80]}")
    return Expected(node_type, value)


def _call(log: Log, rule: str, what: str, call: Callable):
    log(f"{what}")
    try:
        answer = call()
    except SoapCallError as exc:
        log(f"{what} -> {exc}")
        raise Violation(rule, f"{what} answered", str(exc)) from None
    return answer


def get_models(source: DataExchangeClient, objects: Sequence[str], class_uid: str, log: Log) -> list[str]:
    """GetAsModels(objects, class, [text/xml]); :class:`NotApplicable` when the source represents none."""
    name = MODEL_NAMES[class_uid]
    try:
        descriptor: ModelSetDescriptor = source.get_as_models(objects, class_uid, [TEXT_XML])
    except SoapCallError as exc:
        log(f"GetAsModels({len(objects)} objects, {class_uid}) -> {exc}")
        raise NotApplicable(f"the source offers no {name}s (GetAsModels: {exc})") from None
    models = list(descriptor.Models or [])
    failed = list(descriptor.FailedSourceObjects or [])
    log(f"GetAsModels({len(objects)} objects, {class_uid}) -> {len(models)} models, {len(failed)} failed, "
        f"infoset {descriptor.InfosetType}")
    if not models:
        raise NotApplicable(f"the source claims no {name}s: every object in FailedSourceObjects")
    if len(set(m.lower() for m in models)) != len(models):
        raise Violation("PS3.19 §8.3.3", "a different model UUID for each model", f"{models}")
    unknown = sorted(set(f.lower() for f in failed) - set(o.lower() for o in objects))
    if unknown:
        raise Violation("PS3.19 §8.3.3", "FailedSourceObjects drawn from the objects asked for", f"{unknown}")
    if (descriptor.InfosetType or "").lower() != TEXT_XML:
        raise Violation("PS3.19 §8.3.3", f"the infoset type chosen from the recipient's list [{TEXT_XML}]",
                        f"{descriptor.InfosetType!r}")
    return models


def check_models(source: DataExchangeClient, objects: Sequence[str], class_uid: str, log: Log,
                 session_timeout: float = 30.0) -> None:
    """Every check of the module docstring on ``objects`` as models of ``class_uid``."""
    models = get_models(source, objects, class_uid, log)
    documents = _whole_models(source, models, class_uid, log)
    xpaths = list(XPATHS[class_uid])
    answers = _call(log, "PS3.19 §8.3.4", f"QueryModel({len(models)} models, {xpaths})",
                    lambda: source.query_model(models, xpaths)) or []
    _in_order(answers, models, xpaths, "QueryModel", "PS3.19 §8.3.4")
    expected = [_expected(_plain(document), xpath) for document in documents for xpath in xpaths]
    for answer, want in zip(answers, expected):
        got = [_observed(str(node.NodeType), node.Value or "") for node in answer.Result or []]
        if got != want:
            raise Violation("PS3.19 §8.3.4, §9.15 (XPathNodeType)",
                            f"{answer.XPath} on model {answer.Model}: {_show(want)}", _show(got))
    infosets = _call(log, "PS3.19 §8.3.5", f"QueryInfoSet({len(models)} models, {xpaths})",
                     lambda: source.query_info_set(models, xpaths)) or []
    _in_order(infosets, models, xpaths, "QueryInfoSet", "PS3.19 §8.3.5")
    for answer, want in zip(infosets, expected):
        got = [_observed(str(node.NodeType), _text(node.InfoSetValue)) for node in answer.Result or []]
        if got != want:
            raise Violation("PS3.19 §8.3.5", f"{answer.XPath} on model {answer.Model} as {TEXT_XML} bytes: {_show(want)}",
                            _show(got))
    for document in documents:
        _check_bulk_data(source, _plain(document), log, session_timeout)
    _call(log, "PS3.19 §8.3.7", f"ReleaseModels({len(models)} models)", lambda: source.release_models(models))


def check_released(source: DataExchangeClient, models: Sequence[str], log: Log, what: str) -> None:
    """QueryModel on ``models`` (released, or never issued) must not answer any of their nodes."""
    try:
        answers = source.query_model(list(models), ["/"]) or []
    except SoapCallError as exc:
        log(f"QueryModel on {what} -> refused: {exc}")
        return
    nodes = sum(len(answer.Result or []) for answer in answers)
    log(f"QueryModel on {what} -> {len(answers)} results, {nodes} nodes")
    if nodes:
        raise Violation("PS3.19 §8.3.4, §8.3.7", f"no model content for {what} (a fault or no nodes)",
                        f"{nodes} nodes answered")


def _whole_models(source: DataExchangeClient, models: list[str], class_uid: str, log: Log) -> list[etree._Element]:
    """Each model, fetched whole (QueryModel ``/``: one Root node) and validated against its schema."""
    answers = _call(log, "PS3.19 §8.3.4", f"QueryModel({len(models)} models, ['/'])",
                    lambda: source.query_model(models, ["/"])) or []
    _in_order(answers, models, ["/"], "QueryModel", "PS3.19 §8.3.4")
    schema, namespace, root = _schema(class_uid), MODEL_NAMESPACES[class_uid], MODEL_ROOTS[class_uid]
    rule = f"PS3.19 Annex A ({MODEL_NAMES[class_uid]} schema)"
    documents = []
    for answer in answers:
        nodes = answer.Result or []
        if len(nodes) != 1 or str(nodes[0].NodeType) != "Root":
            raise Violation("PS3.19 §8.3.4, §9.15 (XPathNodeType)", f"'/' on model {answer.Model}: one Root node",
                            _show([_observed(str(n.NodeType), n.Value or "") for n in nodes]))
        try:
            document = etree.fromstring((nodes[0].Value or "").encode("utf-8"), _PARSER)
        except etree.LxmlError as exc:
            raise Violation(rule, f"model {answer.Model} as XML", str(exc)) from None
        if document.tag != f"{{{namespace}}}{root}":
            raise Violation(rule, f"model {answer.Model} rooted at {root} in {namespace}", document.tag)
        if not schema.validate(etree.ElementTree(document)):
            error = schema.error_log.last_error
            raise Violation(rule, f"model {answer.Model} valid against {schema_path(class_uid).name}",
                            f"{getattr(error, 'path', None) or 'the model'}: {error.message}" if error else "invalid")
        documents.append(document)
    log(f"{len(documents)} models valid against {schema_path(class_uid).name}")
    return documents


def _in_order(answers: list, models: list[str], xpaths: list[str], operation: str, rule: str) -> None:
    got = [((a.Model or "").lower(), a.XPath) for a in answers]
    want = [(m.lower(), x) for m in models for x in xpaths]
    if got != want:
        raise Violation(rule, f"{operation}: one result for every model and XPath, model-major then XPath order, "
                        f"each naming its model and XPath ({len(want)} results)",
                        f"{len(got)} results: {_pairs(got)}")


def _check_bulk_data(source: DataExchangeClient, plain: etree._Element, log: Log, timeout: float) -> None:
    claims = _bulk_claims(plain)
    uuids = list(claims)
    if not uuids:
        return
    locators = _call(log, "PS3.19 §8.3.2", f"GetData({len(uuids)} bulk data UUIDs)",
                     lambda: source.get_data(uuids, (), True)) or []
    by_source = {(loc.Source or "").lower(): loc for loc in locators}
    missing = [u for u in uuids if u.lower() not in by_source]
    if missing:
        raise Violation("PS3.19 §8.3.2", "one ObjectLocator per bulk data UUID, its Source that UUID",
                        f"none for {', '.join(missing[:3])}")
    for bulk_uuid, claim in claims.items():
        locator = by_source[bulk_uuid.lower()]
        try:
            data = read_located(locator, session=source.session, timeout=timeout)
        except UnreadableObject as exc:
            raise Violation("PS3.19 §8.3.2, §9.5", f"the bytes of bulk data {bulk_uuid} at its locator", str(exc)) from None
        if claim is not None and not (locator.TransferSyntax or "").startswith(ENCAPSULATED_OR_DEFLATED) \
                and len(data) not in (claim, claim + claim % 2):
            raise Violation("PS3.19 §8.3.2, Annex A", f"{claim} bytes of bulk data {bulk_uuid}, as the model's "
                            "own image attributes claim", f"{len(data)} bytes at {locator.URI}")
    log(f"{len(uuids)} bulk data objects read, {sum(c is not None for c in claims.values())} of a size the model claims")
    _call(log, "PS3.19 §8.3.6", "ReleaseData", lambda: source.release_data([l.Locator for l in locators if l.Locator]))


_SAMPLE_BYTES = {"INT8": 1, "INT16": 2, "INT32": 4, "FLOAT32": 4, "FLOAT64": 8}


def _bulk_claims(plain: etree._Element) -> dict[str, Optional[int]]:
    """``{bulk data UUID: its size in bytes as the model states it, or None}``: uncompressed Pixel Data of a
    Native model (Rows x Columns x Samples per Pixel x Number of Frames x Bits Allocated / 8); each frame of an
    Abstract model (samples of its two first Dimensions x Components x the Components' datatype size)."""
    def number(path: str, default: Optional[int] = None) -> Optional[int]:
        found = plain.xpath(path)
        try:
            return int(str(found[0]).strip()) if found else default
        except ValueError:
            return None

    claims: dict[str, Optional[int]] = {}
    if plain.tag == "NativeDicomModel":
        value = '/NativeDicomModel/DicomAttribute[@tag="{}"]/Value[1]/text()'.format
        factors = [number(value("00280010")), number(value("00280011")), number(value("00280002"), 1),
                   number(value("00280008"), 1), number(value("00280100"))]
        pixels = [str(u) for u in plain.xpath('/NativeDicomModel/DicomAttribute[@tag="7FE00010"]/BulkData/@uuid')]
        for bulk in plain.xpath("//BulkData/@uuid"):
            claims[str(bulk)] = None
        if len(pixels) == 1 and None not in factors:
            rows, columns, samples, frames, bits = (int(f or 0) for f in factors)
            claims[pixels[0]] = rows * columns * samples * frames * bits // 8
    else:
        datatypes = {str(d).rsplit("_", 1)[-1] for d in plain.xpath("/AbstractImageDataSet/Component/@datatype")}
        size = _SAMPLE_BYTES.get(datatypes.pop()) if len(datatypes) == 1 else None
        across = number('/AbstractImageDataSet/Dimension[@idNumber="1"]/@numberOfSamples')
        down = number('/AbstractImageDataSet/Dimension[@idNumber="2"]/@numberOfSamples')
        components = len(plain.xpath("/AbstractImageDataSet/Component"))
        frame = across * down * components * size if size and across and down else None
        for bulk in plain.xpath("//DataAt/@bulkDataUUID"):
            claims[str(bulk)] = frame
    return claims


def _text(value: Optional[bytes]) -> str:
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return f"(not UTF-8) {(value or b'')[:40]!r}"


def _show(nodes: list[Expected]) -> str:
    text = ", ".join(f"{n.node_type} {n.value[:60]!r}" for n in nodes) or "no nodes"
    return f"[{text}]"


def _pairs(pairs: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"({m[:8]}…, {x})" for m, x in pairs[:6])
    return shown + (", …" if len(pairs) > 6 else "")
