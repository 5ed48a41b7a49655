"""The Spyne types mirror the Annex B XSD, and model values convert to and from Spyne and zeep objects."""
from __future__ import annotations

import dataclasses
import datetime
import typing

import pytest
import zeep
from lxml import etree

import wsdl
from hosting_service import model
from hosting_service.states import State
from hosting_service.wire import types as T  # the package makes spyne importable first
from hosting_service.wire.convert import args_from_wire, args_to_wire, from_wire, to_spyne, to_wire_dict
from spyne.util.xml import get_object_as_xml
from wire_harness import standard_schema

XS = "http://www.w3.org/2001/XMLSchema"
SERVICES = [
    (T.HOST, wsdl.HOST_SERVICE, "HostService-20100825"),
    (T.APP, wsdl.APPLICATION_SERVICE, "ApplicationService-20100825"),
]


def _xsd_complex_types(path):
    """{type name: [(element, type local name, maxOccurs, nillable)]} read straight from an XSD file."""
    root = etree.parse(str(path)).getroot()
    result = {}
    for decl in root.iterfind(f"{{{XS}}}complexType"):
        result[decl.get("name")] = [
            (e.get("name"), e.get("type").rpartition(":")[2], e.get("maxOccurs", "1"), e.get("nillable") == "true")
            for e in decl.iterfind(f"{{{XS}}}sequence/{{{XS}}}element")
        ]
    return root.get("targetNamespace"), result


@pytest.mark.parametrize("types, folder, name", SERVICES, ids=["host", "app"])
def test_every_xsd_complex_type_is_a_spyne_class_with_the_same_sequence(types, folder, name):
    for xsd in (f"{name}.xsd", "ArrayOfString.xsd"):
        namespace, declared = _xsd_complex_types(folder / xsd)
        assert declared
        for type_name, sequence in declared.items():
            cls = types[type_name]
            assert cls.get_namespace() == namespace
            assert [
                (c.name, T.type_name(c.type), "unbounded" if T.is_many(c.type) else "1", T.is_nillable(c.type))
                for c in T.children(cls)
            ] == sequence, type_name
            assert all(c.type.Attributes.min_occurs == 0 for c in T.children(cls))


def test_the_brief_s_landmarks():
    assert T.HOST.ArrayOfstring.get_namespace() == "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
    assert T.array_item(T.HOST.ArrayOfstring).name == "string"
    assert T.HOST.XPathNodeType.get_namespace() == "http://schemas.datacontract.org/2004/07/System.Xml.XPath"
    assert T.enum_values(T.HOST.StatusType) == ("INFORMATION", "WARNING", "ERROR", "FATALERROR")
    assert T.enum_values(T.APP.State) == tuple(s.value for s in State)
    fields = {c.name: c.type for c in T.children(T.HOST.Status)}
    assert T.base_primitive(fields["CodeValue"]) == "int"
    assert T.base_primitive({c.name: c.type for c in T.children(T.HOST.Patient)}["DateOfBirth"]) == "dateTime"
    locator = {c.name: c.type for c in T.children(T.APP.ObjectLocator)}
    assert T.base_primitive(locator["Length"]) == T.base_primitive(locator["Offset"]) == "long"
    assert [T.wrapped_child(T.HOST[n]) for n in ("UID", "UUID", "MimeType", "Modality")] == ["Uid", "Uuid", "Type", "Modality"]
    assert "Status" not in T.APP and T.APP.Rectangle.get_namespace() == T.APP_NS


@pytest.mark.parametrize("types, folder, name", SERVICES, ids=["host", "app"])
def test_operations_are_the_wsdl_port_type_s(types, folder, name):
    wsdl_root = etree.parse(str(folder / f"{name}.wsdl")).getroot()
    port_ops = [op.get("name") for op in wsdl_root.iter("{http://schemas.xmlsoap.org/wsdl/}operation")]
    assert list(types.operations) == port_ops[: len(port_ops) // 2]  # portType, then binding
    assert len(types.operations) == (12 if types is T.HOST else 10)
    get_data = types.operations["GetData"]
    assert [a.name for a in get_data.args] == ["objects", "acceptableTransferSyntaxes", "includeBulkData"]
    assert (get_data.result.name, T.type_name(get_data.result.type)) == ("GetDataResult", "ArrayOfObjectLocator")
    assert types.operations["ReleaseData"].result is None


# --- conversion ------------------------------------------------------------------------------------------

def _sample(cls):
    """A model value with every field set (lists of two items), valid for the XSD."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Union:
            hint = typing.get_args(hint)[0]
        values[f.name] = _value(f.name, hint)
    return cls(**values)


def _value(name, hint):
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return [_value(name, item), _value(name, item)]
    if dataclasses.is_dataclass(hint):
        return _sample(hint)
    if name == "NodeType":
        return "Comment"
    return {
        str: f"{name}-\u00e9",
        int: 2**33 if name in ("Length", "Offset") else 7,
        bool: True,
        bytes: b"\x00\xff" + name.encode(),
        datetime.datetime: datetime.datetime(1970, 1, 2, 3, 4, 5),
        model.StatusType: model.StatusType.FATALERROR,
    }[hint]


MODEL_TYPES = [
    model.Rectangle, model.Status, model.ObjectDescriptor, model.Series, model.Study, model.Patient,
    model.AvailableData, model.ObjectLocator, model.ModelSetDescriptor, model.XPathNode, model.QueryResult,
    model.XPathNodeInfoSet, model.QueryResultInfoSet,
]


@pytest.mark.parametrize(
    "types, cls",
    [(types, cls) for types in (T.HOST, T.APP) for cls in MODEL_TYPES if cls.__name__ in types],  # APP has no Status
    ids=lambda v: v.__name__ if isinstance(v, type) else v.namespace.rpartition("/")[2],
)
def test_model_values_become_spyne_objects_that_serialise_valid_and_convert_back(types, cls):
    value = _sample(cls)
    wire = to_spyne(value, types[cls.__name__])
    element = get_object_as_xml(wire, types[cls.__name__])
    assert element.tag == f"{{{types.namespace}}}{cls.__name__}"
    schema = standard_schema(types.namespace)
    assert schema.validate(element), schema.error_log
    assert from_wire(wire, cls) == value


@pytest.fixture(scope="module")
def zeep_client():
    return zeep.Client(str(wsdl.HOST_SERVICE_WSDL))


@pytest.mark.parametrize("cls", MODEL_TYPES, ids=lambda c: c.__name__)
def test_wire_dicts_are_accepted_by_zeep_and_zeep_objects_convert_back(zeep_client, cls):
    value = _sample(cls)
    zeep_type = zeep_client.get_type(f"{{{T.HOST_NS}}}{cls.__name__}")
    zeep_object = zeep_type(**to_wire_dict(value))
    rendered = etree.Element("wrapper")
    zeep_type.render(rendered, zeep_object)
    assert standard_schema(T.HOST_NS).validate(_as_global_element(rendered, cls.__name__))
    assert from_wire(zeep_object, cls) == value


def _as_global_element(rendered, type_name):
    element = etree.Element(f"{{{T.HOST_NS}}}{type_name}")
    element.extend(rendered)
    return element


def test_wire_dict_shapes_the_client_engineer_relies_on():
    descriptor = model.ObjectDescriptor(ClassUID="1.2", DescriptorUuid="u")
    assert to_wire_dict(descriptor) == {"ClassUID": {"Uid": "1.2"}, "DescriptorUuid": {"Uuid": "u"}}
    assert to_wire_dict(model.AvailableData(ObjectDescriptors=[descriptor])) == {
        "ObjectDescriptors": {"ObjectDescriptor": [{"ClassUID": {"Uid": "1.2"}, "DescriptorUuid": {"Uuid": "u"}}]},
        "Patients": {"Patient": []},
    }
    assert to_wire_dict(["a", "b"], "ArrayOfUUID") == {"UUID": [{"Uuid": "a"}, {"Uuid": "b"}]}
    assert to_wire_dict(["file:"], "ArrayOfstring") == {"string": ["file:"]}
    assert to_wire_dict(State.IDLE) == "IDLE"
    with pytest.raises(TypeError, match="ArrayOfUUID"):
        to_wire_dict(["a"])


def test_operation_arguments_both_ways():
    get_data = T.APP.operations["GetData"]
    assert args_to_wire(get_data, objects=["u1"], acceptableTransferSyntaxes=["1.2.840.10008.1.2.1"], includeBulkData=False) == {
        "objects": {"UUID": [{"Uuid": "u1"}]},
        "acceptableTransferSyntaxes": {"UID": [{"Uid": "1.2.840.10008.1.2.1"}]},
        "includeBulkData": False,
    }
    with pytest.raises(TypeError, match="no argument uuids"):
        args_to_wire(get_data, uuids=["u1"])
    state_op = T.HOST.operations["NotifyStateChanged"]
    assert args_from_wire(state_op, ["COMPLETED"]) == {"state": State.COMPLETED}
    assert args_from_wire(get_data, [None, None, None]) == {"objects": None, "acceptableTransferSyntaxes": None, "includeBulkData": None}


def test_from_wire_targets():
    wire = to_spyne(["l1", "l2"], T.HOST.ArrayOfUUID)
    assert from_wire(wire, "ArrayOfUUID") == ["l1", "l2"]
    assert from_wire(to_spyne("1.2.3", T.HOST.UID), "UID") == "1.2.3"
    assert from_wire("EXIT", State) is State.EXIT
    assert from_wire(None, model.Rectangle) is None
    locators = [model.ObjectLocator(Length=1, URI="file:///a")]
    assert from_wire(to_spyne(locators, T.APP.ArrayOfObjectLocator), list[model.ObjectLocator]) == locators
    with pytest.raises(TypeError, match="XSD type name"):
        from_wire(wire, list[str])
