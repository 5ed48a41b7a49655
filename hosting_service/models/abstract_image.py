"""The Abstract Multi-Dimensional Image Model (PS3.19 A.2) of one image set.

**Image sets.** The objects of one GetAsModels call that carry pixel data are grouped: single-frame
images of one series with the same matrix, pixel encoding, orientation and frame of reference make one
set (a volume, slices ordered along the normal of their orientation, else by Instance Number); a
multi-frame object is a set of its own. Objects without pixel data cannot be represented.

**What a model says.** Three dimensions, ``1`` columns, ``2`` rows, ``3`` slices (or frames):

* columns and rows are ``Regular`` with the Pixel Spacing in mm and the direction cosines of Image
  Orientation (Patient); without Pixel Spacing their unit is UCUM ``{pixel}``;
* slices are ``Regular`` when evenly spaced (within 1 %), else ``Irregular`` with each slice's distance
  from the first; each slice's ``Origin`` is its Image Position (Patient) and the normal is the
  dimension's direction; frames without positions are ``Regular`` in UCUM ``{frame}``.

One ``Component`` per sample (grey: one; colour: one per channel), with the data type of the stored
samples, their representable range and the unit ``1``: values are stored pixel values, before any
Modality LUT (Rescale Slope/Intercept are not applied). Semantics and axes use codes of this host's
private scheme ``99DCMHOST`` (PS3.16 reserves ``99`` prefixes for local schemes) and UCUM units.

``PixelData`` holds, per slice, a ``DataAt`` with the descriptor UUID of the source object and a
``bulkDataUUID``: the slice's samples, little endian, row by row, channels interleaved. Where the file
holds exactly those bytes (uncompressed little-endian data, interleaved), the bulk data is a span of
the file; otherwise (compressed, big endian, planar, YBR, 1-bit) GetData decodes that frame with pydicom
on request into the instance's cache.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from lxml import etree
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from hosting_service.models.source import Source, Span
from hosting_service.store.base import InputObject

LOCAL_SCHEME = "99DCMHOST"


@dataclass
class FrameData:
    """The bulk data of one slice: a span of the file, or frame ``frame`` of ``obj`` to decode."""

    uuid: str
    span: Optional[Span] = None
    frame: int = 0


@dataclass
class Image:
    """One offered object with pixel data, as far as the model needs it."""

    descriptor_uuid: str
    obj: InputObject
    dataset: Dataset
    frames: list[FrameData] = field(default_factory=list)


class NotAnImage(Exception):
    """The object has no pixel data this model can describe."""


def read_image(source: Source, descriptor_uuid: str) -> Image:
    """The image of an open :class:`Source`, with one :class:`FrameData` per frame."""
    ds = source.dataset
    pixel_tag = next((t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds), None)
    if pixel_tag is None or "Rows" not in ds or "Columns" not in ds:
        raise NotAnImage("it has no pixel data")
    frames = optional_int(ds, "NumberOfFrames") or 1
    samples = optional_int(ds, "SamplesPerPixel") or 1
    bits = optional_int(ds, "BitsAllocated") or 8
    syntax = source.transfer_syntax
    if syntax.is_encapsulated:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise NotAnImage(f"pydicom has no decoder for {syntax.name}") from None
        if not decoder.is_available:
            raise NotAnImage(f"decoding {syntax.name} needs a plugin ({'; '.join(decoder.missing_dependencies)})")
    raw = ds.get_item(pixel_tag, keep_deferred=True)
    direct = (source.in_file and source.is_deferred(raw) and not syntax.is_encapsulated and source.little_endian
              and bits % 8 == 0 and (samples == 1 or (optional_int(ds, "PlanarConfiguration") or 0) == 0)
              and ds.get("PhotometricInterpretation", "") in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"))
    image = Image(descriptor_uuid, source.obj, ds)
    frame_bytes = int(ds.Rows) * int(ds.Columns) * samples * bits // 8
    whole = source.span(raw) if direct and isinstance(raw, RawDataElement) else None
    if whole is not None and whole.length < frame_bytes * frames:
        raise NotAnImage("its pixel data is shorter than its frames")
    for index in range(frames):
        span = None if whole is None else Span(whole.path, whole.offset + index * frame_bytes, frame_bytes)
        image.frames.append(FrameData(str(uuid.uuid4()), span, index))
    return image


def optional_int(ds: Dataset, keyword: str) -> Optional[int]:
    value = ds.get(keyword)
    return None if value in (None, "") else int(value)


def group_images(images: list[Image]) -> list[list[Image]]:
    """Image sets (see the module docstring), each in slice order, in the order their first object came."""
    groups: dict[object, list[Image]] = {}
    for image in images:
        ds = image.dataset
        if len(image.frames) > 1:
            key: object = ("object", image.descriptor_uuid)
        else:
            orientation = tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient") or ())
            key = (ds.get("SeriesInstanceUID"), ds.get("FrameOfReferenceUID"), int(ds.Rows), int(ds.Columns),
                   ds.get("SamplesPerPixel"), ds.get("BitsAllocated"), ds.get("PixelRepresentation"), orientation)
        groups.setdefault(key, []).append(image)
    return [_ordered(group) for group in groups.values()]


def _normal(ds: Dataset) -> Optional[np.ndarray]:
    orientation = ds.get("ImageOrientationPatient")
    if not orientation or len(orientation) != 6:
        return None
    row, column = np.array(orientation[:3], float), np.array(orientation[3:], float)
    return np.cross(row, column)


def _position(ds: Dataset) -> Optional[np.ndarray]:
    position = ds.get("ImagePositionPatient")
    return None if not position or len(position) != 3 else np.array(position, float)


def _ordered(group: list[Image]) -> list[Image]:
    normal = _normal(group[0].dataset)
    positions = [_position(i.dataset) for i in group]
    if normal is not None and all(p is not None for p in positions):
        distance = {id(i): float(np.dot(p, normal)) for i, p in zip(group, positions) if p is not None}
        return sorted(group, key=lambda i: distance[id(i)])
    return sorted(group, key=lambda i: int(i.dataset.get("InstanceNumber") or 0))


# --- the model ---------------------------------------------------------------------------------------

def _coded(parent: etree._Element, name: str, value: str, scheme: str, meaning: str) -> etree._Element:
    element = etree.SubElement(parent, name)
    etree.SubElement(element, "CodeValue").text = value
    etree.SubElement(element, "CodingSchemeDesignator").text = scheme
    etree.SubElement(element, "CodeMeaning").text = meaning
    return element


_CHANNELS = {
    "RGB": ("R", "G", "B"), "YBR_FULL": ("R", "G", "B"), "YBR_FULL_422": ("R", "G", "B"),
    "YBR_ICT": ("R", "G", "B"), "YBR_RCT": ("R", "G", "B"),
}
_CHANNEL_MEANINGS = {"R": "Red", "G": "Green", "B": "Blue"}


def _datatype(ds: Dataset) -> tuple[str, Optional[tuple[float, float]]]:
    if "FloatPixelData" in ds:
        return "FLOAT32", None
    if "DoubleFloatPixelData" in ds:
        return "FLOAT64", None
    bits = int(ds.get("BitsAllocated") or 8)
    stored = int(ds.get("BitsStored") or bits)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    size = 8 if bits <= 8 else 16 if bits <= 16 else 32
    low, high = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    return f"{'SIGNED' if signed else 'UNSIGNED'}_INT{size}", (float(low), float(high))


def _spatial(parent: etree._Element, spacing: float, unit: tuple[str, str], direction: Optional[np.ndarray],
             dimension: int, width: Optional[float] = None) -> None:
    regular = etree.SubElement(parent, "Regular", width=repr(float(width if width is not None else spacing)),
                               spacing=repr(float(spacing)))
    _coded(regular, "Unit", unit[0], "UCUM", unit[1])
    if direction is not None:
        parent.append(_cosines(dimension, direction))


def _cosines(dimension: int, direction: np.ndarray) -> etree._Element:
    return etree.Element("DirectionCosines", concernedSpatialDimension=str(dimension),
                         cosAlongX=repr(float(direction[0])), cosAlongY=repr(float(direction[1])),
                         cosAlongZ=repr(float(direction[2])))


def abstract_model(images: list[Image]) -> tuple[etree._Element, list[tuple[Image, FrameData]]]:
    """The model of one image set (ordered) and its slices' bulk data, in slice order."""
    first = images[0].dataset
    slices = [(image, frame) for image in images for frame in image.frames]
    root = etree.Element("AbstractImageDataSet")
    datatype, value_range = _datatype(first)
    photometric = str(first.get("PhotometricInterpretation") or "MONOCHROME2")
    samples = int(first.get("SamplesPerPixel") or 1)
    channels = _CHANNELS.get(photometric, ())[:samples] if samples > 1 else ()
    for number in range(1, samples + 1):
        component = etree.SubElement(root, "Component", idNumber=str(number), datatype=datatype)
        if value_range is not None and not channels:
            component.set("minValue", repr(value_range[0]))
            component.set("maxValue", repr(value_range[1]))
        if channels:
            code = channels[number - 1]
            _coded(component, "Semantics", code, LOCAL_SCHEME, _CHANNEL_MEANINGS[code])
        else:
            _coded(component, "Semantics", "STORED" if samples == 1 else f"SAMPLE{number}", LOCAL_SCHEME,
                   "Stored pixel value" if samples == 1 else f"Sample {number}")
        _coded(component, "Unit", "1", "UCUM", "no units")

    orientation = first.get("ImageOrientationPatient")
    spacing = first.get("PixelSpacing")
    row_direction = np.array(orientation[:3], float) if orientation and len(orientation) == 6 else None
    column_direction = np.array(orientation[3:], float) if orientation and len(orientation) == 6 else None
    pixel_unit = ("mm", "millimeter") if spacing else ("{pixel}", "pixel")
    for number, (name, count, step, direction) in enumerate((
        ("COLUMN", int(first.Columns), float(spacing[1]) if spacing else 1.0, row_direction),
        ("ROW", int(first.Rows), float(spacing[0]) if spacing else 1.0, column_direction),
    ), 1):
        dimension = etree.SubElement(root, "Dimension", idNumber=str(number), numberOfSamples=str(count))
        _coded(dimension, "Semantics", name, LOCAL_SCHEME, name.capitalize())
        _spatial(dimension, step, pixel_unit, direction, number)

    dimension = etree.SubElement(root, "Dimension", idNumber="3", numberOfSamples=str(len(slices)))
    found = [_position(image.dataset) for image, _ in slices]
    positions = [p for p in found if p is not None]
    normal = _normal(first)
    if len(slices) > 1 and normal is not None and len(positions) == len(slices) and len(images) > 1:
        _coded(dimension, "Semantics", "SLICE", LOCAL_SCHEME, "Slice")
        distances = [float(np.dot(p - positions[0], normal)) for p in positions]
        steps = np.diff(distances)
        thickness = first.get("SliceThickness")
        if len(steps) and np.allclose(steps, steps[0], rtol=0.01, atol=1e-6) and steps[0] > 0:
            _spatial(dimension, float(steps[0]), ("mm", "millimeter"), None, 3,
                     float(thickness) if thickness else None)
        else:
            irregular = etree.SubElement(dimension, "Irregular", origin="0.0")
            for index, distance in enumerate(distances, 1):
                width = float(thickness) if thickness else float(np.median(steps)) if len(steps) else 1.0
                etree.SubElement(irregular, "SampleLocation", index=str(index), width=repr(width),
                                 distanceToOrigin=repr(distance))
            _coded(irregular, "Unit", "mm", "UCUM", "millimeter")
        for index, position in enumerate(positions, 1):
            etree.SubElement(dimension, "Origin", index=str(index), xCoord=repr(float(position[0])),
                             yCoord=repr(float(position[1])), zCoord=repr(float(position[2])))
        dimension.append(_cosines(3, normal))
    else:
        _coded(dimension, "Semantics", "FRAME" if len(images) == 1 else "SLICE", LOCAL_SCHEME,
               "Frame" if len(images) == 1 else "Slice")
        _spatial(dimension, 1.0, ("{frame}", "frame"), None, 3)
        if found and found[0] is not None:
            position = found[0]
            etree.SubElement(dimension, "Origin", index="1", xCoord=repr(float(position[0])),
                             yCoord=repr(float(position[1])), zCoord=repr(float(position[2])))

    data = etree.SubElement(etree.SubElement(root, "PixelData"), "DimensionalData", dimensionID="3")
    for index, (image, frame) in enumerate(slices, 1):
        etree.SubElement(data, "DataAt", indexWithinDimension=str(index), descriptorUUID=image.descriptor_uuid,
                         bulkDataUUID=frame.uuid)
    return root, slices
