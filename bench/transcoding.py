"""Benchmark: GetData of a JPEG 2000 series as Explicit VR Little Endian, against decoding it with pydicom.

A series of 200 CT slices of 512 x 512 (the sample phantom, encoded as JPEG 2000 Lossless by pydicom with
pylibjpeg-openjpeg) is offered to an instance of a real server (``dicom-host serve``), and an application asks
for all of it with ``acceptableTransferSyntaxes = [Explicit VR Little Endian]`` in one GetData call:

1. baseline: ``pydicom.dcmread(path).pixel_array`` for every file, in this process (what an application that
   accepts JPEG 2000 would do itself);
2. first call: the server decodes every slice and writes it into its delivery cache;
3. cached: the same GetData from a new instance (the copies come from the shared cache, each is linked into the
   instance's folder), and once more from that instance (its links are there already).

Each GetData is timed from the request to the parsed answer (``client.HostClient``). The baseline and the
first call are run ``--rounds`` times, alternately, each first call on a new server with an empty cache, and
each keeps its best time (so that a burst of load elsewhere on the machine spoils one sample, not one
contender). The ratios to the baseline are printed. Also printed: the time of the baseline decode with each decoder plugin installed (pass
``--plugins pylibjpeg,gdcm`` after ``pip install python-gdcm`` to compare them).

Run: ``.venv/bin/python bench/transcoding.py [--slices N] [--size PX] [--data DIR]``; ``--data`` keeps the
encoded series for the next run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from client import HostClient
from hosting_service.admin.client import AdminClient
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import iter_descriptors
from hosting_service.orchestration.server import EmbeddedServer
from hosting_service.states import State


def series(root: Path, slices: int, size: int) -> list[Path]:
    """The encoded series under ``root``: generated unless a previous run left it there."""
    folder = root / f"j2k-{slices}x{size}"
    paths = sorted(folder.rglob("*.dcm"))
    if len(paths) == slices:
        return paths
    started = time.perf_counter()
    paths = write_sample_series(folder, slices=slices, size=size, seed="bench transcoding",
                                transfer_syntax=JPEG2000Lossless)
    print(f"encoded {len(paths)} slices of {size}x{size} as JPEG 2000 Lossless in "
          f"{time.perf_counter() - started:.1f} s under {folder}")
    return paths


def decode_all(paths: list[Path], plugin: str = "") -> float:
    started = time.perf_counter()
    for path in paths:
        if plugin:
            pixel_array(path, decoding_plugin=plugin)
        else:
            pydicom.dcmread(path).pixel_array
    return time.perf_counter() - started


def get_data(admin: AdminClient, paths: list[Path]) -> tuple[HostClient, list[str]]:
    """An instance in INPROGRESS that was offered ``paths``: its client and the UUIDs to ask for."""
    instance = admin.create_instance()
    offered = admin.offer_inputs(instance["id"], [str(p.parent) for p in paths[:1]])["availableData"]
    host = HostClient(instance["hostURL"], timeout=1200)
    host.notify_state_changed(State.IDLE)
    host.notify_state_changed(State.INPROGRESS)
    return host, [d.DescriptorUuid for d, *_ in iter_descriptors(offered)]


def timed_get_data(host: HostClient, uuids: list[str]) -> float:
    started = time.perf_counter()
    locators = host.get_data(uuids, [ExplicitVRLittleEndian], True)
    elapsed = time.perf_counter() - started
    assert len(locators) == len(uuids) and all(l.TransferSyntax == ExplicitVRLittleEndian for l in locators)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--data", type=Path, help="keep the encoded series here and reuse it")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plugins", default="pylibjpeg", help="decoder plugins to time the baseline with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-transcoding-") as temporary:
        paths = series(args.data or Path(temporary), args.slices, args.size)
        decode_all(paths[:5])  # warm the page cache and the decoder
        plugins = {plugin: float("inf") for plugin in args.plugins.split(",")}
        baseline = first = cached = linked = float("inf")
        for round_ in range(args.rounds):
            for plugin in list(plugins) if round_ % 2 == 0 else reversed(list(plugins)):
                plugins[plugin] = min(plugins[plugin], decode_all(paths, plugin))
            baseline = min(baseline, decode_all(paths))
            with EmbeddedServer(data_dir=Path(temporary) / f"server{round_}") as server:
                admin = AdminClient(server.url, token=server.admin_token, timeout=600)
                host, uuids = get_data(admin, paths)
                first = min(first, timed_get_data(host, uuids))
                other, uuids = get_data(admin, paths)
                cached = min(cached, timed_get_data(other, uuids))
                linked = min(linked, timed_get_data(other, uuids))
        for plugin, seconds in plugins.items():
            print(f"decode with the {plugin} plugin: {seconds * 1000:.0f} ms")
        print(f"pydicom decode of {len(paths)} slices in this process: {baseline * 1000:.0f} ms")
        for label, seconds in (("first call (decode + cache)", first), ("cached, new instance", cached),
                               ("cached, same instance", linked)):
            print(f"GetData as Explicit VR Little Endian, {label}: {seconds * 1000:.0f} ms, "
                  f"ratio {seconds / baseline:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
