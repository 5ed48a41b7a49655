"""What GetData hands out: the original file, cached re-encodings, files without bulk data, refusals."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEGBaseline8Bit,
    RLELossless,
)

from hosting_service.dicom.cache import DeliveryCache
from hosting_service.dicom.delivery import Delivery, NotDeliverable, deliver
from hosting_service.dicom.inputs import scan
from hosting_service.dicom.samples import write_sample_series
from hosting_service.store.base import InputObject


@pytest.fixture
def offered(tmp_path) -> InputObject:
    """One CT image as a scan offers it (stored Explicit VR Little Endian)."""
    [obj] = scan([write_sample_series(tmp_path / "in", slices=1)[0]]).objects
    return obj


def cache_in(folder: Path, max_bytes: int = 1 << 30) -> DeliveryCache:
    """A delivery cache in ``folder``, handing out to ``folder/instance``."""
    return DeliveryCache(folder / "shared", max_bytes, folder / "instance")


@pytest.fixture
def cache(tmp_path) -> DeliveryCache:
    return cache_in(tmp_path / "cache")


def assert_same_object(delivered: Path, original: Path) -> None:
    """The same attributes and the same pixels, whatever the encoding."""
    got, want = pydicom.dcmread(delivered), pydicom.dcmread(original)
    assert np.array_equal(got.pixel_array, want.pixel_array)
    for element in want:
        if element.tag != 0x7FE00010:
            assert got[element.tag].value == element.value, element


def test_stored_syntax_acceptable_hands_out_the_original(offered, cache):
    original = Delivery(Path(offered.path), 0, os.path.getsize(offered.path), ExplicitVRLittleEndian)

    assert deliver(offered, [ExplicitVRLittleEndian, ImplicitVRLittleEndian], True, cache) == original
    assert deliver(offered, [], True, cache) == original  # empty list: as stored
    assert not cache.root.exists() and not cache.handout.exists()


def test_the_original_is_handed_out_without_parsing_it(offered, cache, monkeypatch):
    def no_parsing(*args, **kwargs):
        raise AssertionError("the common case must not parse the file")

    monkeypatch.setattr(pydicom, "dcmread", no_parsing)
    assert deliver(offered, [ExplicitVRLittleEndian], True, cache).path == Path(offered.path)


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless]
)
def test_first_acceptable_syntax_is_produced_into_the_cache(offered, cache, syntax):
    delivery = deliver(offered, [syntax, ExplicitVRLittleEndian], True, cache)

    assert delivery.path.parent == cache.handout and delivery.transfer_syntax == syntax
    assert (delivery.offset, delivery.length) == (0, delivery.path.stat().st_size)
    assert pydicom.dcmread(delivery.path).file_meta.TransferSyntaxUID == syntax
    assert_same_object(delivery.path, Path(offered.path))


def test_explicit_to_implicit_and_back(offered, cache, tmp_path):
    implicit = deliver(offered, [ImplicitVRLittleEndian], True, cache)
    [reoffered] = scan([implicit.path]).objects
    assert reoffered.descriptor.TransferSyntaxUID == ImplicitVRLittleEndian

    back = deliver(reoffered, [ExplicitVRLittleEndian], True, cache_in(tmp_path / "second"))

    assert pydicom.dcmread(back.path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert_same_object(back.path, Path(offered.path))


@pytest.mark.parametrize("stored", [RLELossless, ExplicitVRBigEndian])
def test_stored_rle_or_big_endian_is_delivered_as_explicit_little_endian(tmp_path, cache, stored):
    plain = write_sample_series(tmp_path / "plain", slices=1)[0]
    [obj] = scan([write_sample_series(tmp_path / "stored", slices=1, transfer_syntax=stored)[0]]).objects
    assert obj.descriptor.TransferSyntaxUID == stored

    delivery = deliver(obj, [ExplicitVRLittleEndian], True, cache)

    assert pydicom.dcmread(delivery.path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert_same_object(delivery.path, plain)


def test_without_bulk_data_the_stored_object_is_still_handed_out_as_it_is(offered, cache):
    """includeBulkData=FALSE permits leaving the pixels out; where no copy is made anyway, nothing is gained."""
    original = Delivery(Path(offered.path), 0, os.path.getsize(offered.path), ExplicitVRLittleEndian)

    assert deliver(offered, [], False, cache) == original
    assert deliver(offered, [ExplicitVRLittleEndian], False, cache) == original
    assert not cache.root.exists() and not cache.handout.exists()


def test_without_bulk_data_a_copy_leaves_the_pixels_out(offered, cache):
    delivery = deliver(offered, [ImplicitVRLittleEndian], False, cache)

    ds = pydicom.dcmread(delivery.path)
    assert delivery.path.parent == cache.handout and delivery.transfer_syntax == ImplicitVRLittleEndian
    assert "PixelData" not in ds
    assert (ds.Rows, ds.Columns, ds.SOPInstanceUID) == (64, 64, pydicom.dcmread(offered.path).SOPInstanceUID)
    assert delivery.length < 64 * 64 * 2 < offered.length


def test_bulk_data_is_removed_at_every_depth(tmp_path, cache):
    ds = pydicom.dcmread(write_sample_series(tmp_path / "in", slices=1)[0])
    icon, waveform = Dataset(), Dataset()
    icon.Rows, icon.BitsAllocated, icon.PixelData = 2, 8, b"\0" * 4
    waveform.WaveformBitsAllocated, waveform.WaveformData = 16, b"\1\0" * 4
    ds.IconImageSequence, ds.WaveformSequence = [icon], [waveform]
    ds.add_new(0x60000010, "US", 64)  # Overlay Rows stays,
    ds.add_new(0x60003000, "OW", b"\0" * 512)  # Overlay Data goes
    ds.save_as(tmp_path / "bulky.dcm")
    [obj] = scan([tmp_path / "bulky.dcm"]).objects

    stripped = pydicom.dcmread(deliver(obj, [ImplicitVRLittleEndian], False, cache).path)

    assert "PixelData" not in stripped and 0x60003000 not in stripped
    assert "PixelData" not in stripped.IconImageSequence[0] and stripped.IconImageSequence[0].Rows == 2
    assert "WaveformData" not in stripped.WaveformSequence[0]
    assert stripped.WaveformSequence[0].WaveformBitsAllocated == 16 and stripped[0x60000010].value == 64


def test_cached_copy_is_reused_until_the_source_changes(offered, cache):
    first = deliver(offered, [ImplicitVRLittleEndian], True, cache)
    written = first.path.stat()

    again = deliver(offered, [ImplicitVRLittleEndian], True, cache)

    assert again == first
    assert (again.path.stat().st_ino, again.path.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert [p.name for p in cache.root.iterdir()] == [first.path.name]  # no temporary files left behind

    os.utime(offered.path, ns=(written.st_mtime_ns + 10**9, written.st_mtime_ns + 10**9))
    assert deliver(offered, [ImplicitVRLittleEndian], True, cache).path != first.path


def _deliver_implicit(obj: InputObject, cache: DeliveryCache) -> Delivery:
    return deliver(obj, [ImplicitVRLittleEndian], True, cache)


def test_several_processes_deliver_the_same_object(offered, cache):
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        deliveries = list(pool.map(_deliver_implicit, [offered] * 8, [cache] * 8))

    assert len(set(deliveries)) == 1
    assert [p.name for p in cache.root.iterdir()] == [deliveries[0].path.name]
    assert_same_object(deliveries[0].path, Path(offered.path))


def test_impossible_requests_are_refused_with_the_reasons(offered, cache):
    with pytest.raises(NotDeliverable) as refused:
        deliver(offered, [JPEGBaseline8Bit, "1.2.3.4"], True, cache)

    message = str(refused.value)
    assert offered.descriptor.DescriptorUuid in message
    assert f"{JPEGBaseline8Bit}: pydicom cannot encode JPEG Baseline (Process 1)" in message
    assert "1.2.3.4: not a transfer syntax this host knows" in message
    assert deliver(offered, [JPEGBaseline8Bit, ImplicitVRLittleEndian], True, cache).transfer_syntax == (
        ImplicitVRLittleEndian)


def test_compressed_data_that_cannot_be_decoded(tmp_path, cache):
    """Stored JPEG 2000 whose frame is not a codestream: the decoder fails, and says so."""
    ds = pydicom.dcmread(write_sample_series(tmp_path / "in", slices=1)[0])
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000
    ds.save_as(tmp_path / "j2k.dcm")
    [obj] = scan([tmp_path / "j2k.dcm"]).objects

    with pytest.raises(NotDeliverable, match=f"{ExplicitVRLittleEndian}: re-encoding failed: .*J2K"):
        deliver(obj, [ExplicitVRLittleEndian], True, cache)
    assert deliver(obj, [ExplicitVRLittleEndian, JPEG2000], True, cache).path == Path(obj.path)
    header = deliver(obj, [ExplicitVRLittleEndian], False, cache)  # no pixels, nothing to decode
    assert "PixelData" not in pydicom.dcmread(header.path)


def test_source_removed_or_changed_since_offered(offered, cache):
    with open(offered.path, "ab") as f:
        f.write(b"\0" * 10)
    shorter = InputObject(offered.descriptor, offered.path, 0, offered.length + 10)
    Path(offered.path).write_bytes(Path(offered.path).read_bytes()[:-20])

    with pytest.raises(NotDeliverable, match="changed since it was offered"):
        deliver(shorter, [], True, cache)
    os.unlink(offered.path)
    with pytest.raises(NotDeliverable, match="can no longer be read"):
        deliver(offered, [], True, cache)


def test_non_dicom_objects_are_handed_out_as_they_are(tmp_path, cache):
    (tmp_path / "notes.txt").write_text("twelve bytes")
    [obj] = scan([tmp_path / "notes.txt"]).objects

    assert deliver(obj, [ExplicitVRLittleEndian], False, cache) == Delivery(tmp_path / "notes.txt", 0, 12, "")


def test_data_set_without_part10_header_is_wrapped_in_one(tmp_path, cache):
    source = write_sample_series(tmp_path / "in", slices=1)[0]
    ds = pydicom.dcmread(source)
    ds.file_meta, ds.preamble = FileMetaDataset(), None
    pydicom.dcmwrite(tmp_path / "raw", ds, implicit_vr=True, little_endian=True)
    [obj] = scan([tmp_path / "raw"]).objects

    delivery = deliver(obj, [ImplicitVRLittleEndian], True, cache)

    assert delivery.path.parent == cache.handout
    assert delivery.path.read_bytes()[128:132] == b"DICM"
    assert pydicom.dcmread(delivery.path).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert_same_object(delivery.path, source)


def test_object_inside_a_larger_file(offered, tmp_path, cache):
    data = Path(offered.path).read_bytes()
    (tmp_path / "bundle").write_bytes(b"x" * 1000 + data + b"y" * 500)
    inside = InputObject(offered.descriptor, str(tmp_path / "bundle"), 1000, len(data))

    assert deliver(inside, [], True, cache) == Delivery(tmp_path / "bundle", 1000, len(data), ExplicitVRLittleEndian)
    implicit = deliver(inside, [ImplicitVRLittleEndian], True, cache)
    assert_same_object(implicit.path, Path(offered.path))


def test_another_instance_gets_the_same_cached_copy(offered, cache, tmp_path):
    first = deliver(offered, [ImplicitVRLittleEndian], True, cache)
    other = DeliveryCache(cache.root, cache.max_bytes, tmp_path / "other-instance")

    second = deliver(offered, [ImplicitVRLittleEndian], True, other)

    assert second.path.parent == other.handout and second.path.samefile(first.path)  # linked, not made again


def test_cache_keeps_to_its_bound_least_recently_used_first(tmp_path):
    paths = write_sample_series(tmp_path / "in", slices=6)
    objects = scan(paths).objects
    one = deliver(objects[0], [ImplicitVRLittleEndian], True, cache_in(tmp_path / "probe")).length
    cache = cache_in(tmp_path / "cache", max_bytes=3 * one + one // 2)  # room for three
    handed = [deliver(obj, [ImplicitVRLittleEndian], True, cache) for obj in objects[:3]]
    for used, delivery in enumerate(handed, 1):  # used in this order, long ago
        os.utime(cache.root / delivery.path.name, ns=(used, used))
    other_instance = DeliveryCache(cache.root, cache.max_bytes, tmp_path / "other")
    deliver(objects[0], [ImplicitVRLittleEndian], True, other_instance)  # used again, now

    later = [deliver(obj, [ImplicitVRLittleEndian], True, cache) for obj in objects[3:5]]
    cache.close()

    entries = {p.name: p.stat().st_size for p in cache.root.glob("*.dcm")}
    assert sum(entries.values()) <= cache.max_bytes
    assert set(entries) == {d.path.name for d in (handed[0], *later)}
    for delivery, obj in zip(handed + later, objects):  # what was handed out stays readable, evicted or not
        assert_same_object(delivery.path, Path(obj.path))


def test_cache_of_size_zero_still_hands_out_and_keeps_nothing(offered, tmp_path):
    cache = cache_in(tmp_path / "cache", max_bytes=0)

    delivery = deliver(offered, [ImplicitVRLittleEndian], True, cache)
    cache.close()

    assert not list(cache.root.glob("*.dcm"))
    assert_same_object(delivery.path, Path(offered.path))


def test_eviction_removes_what_a_killed_writer_left_and_spares_a_live_one(tmp_path):
    import fcntl

    cache = cache_in(tmp_path / "cache")
    cache.root.mkdir(parents=True)
    (cache.root / ".partial-dead.dcm").write_bytes(b"half")
    with open(cache.root / ".partial-live.dcm", "wb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        cache.evict()
        assert sorted(p.name for p in cache.root.iterdir()) == [".lock", ".partial-live.dcm"]


def test_hand_out_is_a_copy_where_no_link_can_be_made(offered, cache, monkeypatch):
    import errno

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    delivery = deliver(offered, [ImplicitVRLittleEndian], True, cache)

    [entry] = cache.root.glob("*.dcm")
    assert delivery.path.parent == cache.handout and not delivery.path.samefile(entry)
    assert delivery.path.read_bytes() == entry.read_bytes()
    assert [p.name for p in cache.handout.iterdir()] == [entry.name]
