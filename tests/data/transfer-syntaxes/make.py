"""How the files beside this script were made (run once by hand; the tests only read the files).

pydicom ships test files for most compressed transfer syntaxes (``pydicom.data.get_testdata_file``), but
none in High-Throughput JPEG 2000 or JPEG Lossless Process 14 (1.2.840.10008.1.2.4.57), and no pydicom
plugin encodes them. So a 64 x 64 CT slice of :mod:`hosting_service.dicom.samples` is encoded here with
OpenJPH through ``imagecodecs`` and with GDCM (neither is a dependency of the project:
``pip install imagecodecs python-gdcm`` to run this):

* ``ct_htj2k_lossless.dcm``: 1.2.840.10008.1.2.4.201, reversible;
* ``ct_htj2k.dcm``: 1.2.840.10008.1.2.4.203, irreversible;
* ``ct_jpeg_lossless_p14.dcm``: 1.2.840.10008.1.2.4.57 (GDCM's encoder uses predictor 1).

    python tests/data/transfer-syntaxes/make.py
"""
from pathlib import Path

import gdcm
import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import HTJ2K, HTJ2KLossless

from hosting_service.dicom.samples import write_sample_series

HERE = Path(__file__).resolve().parent


def main() -> None:
    [source] = write_sample_series(HERE / "tmp", slices=1, seed="htj2k test files")
    for name, syntax, reversible in (("ct_htj2k_lossless.dcm", HTJ2KLossless, True), ("ct_htj2k.dcm", HTJ2K, False)):
        ds = pydicom.dcmread(source)
        pixels = ds.pixel_array.astype(np.int16)
        ds.PixelData = encapsulate([imagecodecs.htj2k_encode(pixels, reversible=reversible)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        if not reversible:
            ds.LossyImageCompression = "01"
        ds.save_as(HERE / name, enforce_file_format=True)
    jpeg_lossless(source, HERE / "ct_jpeg_lossless_p14.dcm")
    source.unlink()
    for folder in sorted((HERE / "tmp").rglob("*"), reverse=True):
        folder.rmdir()
    (HERE / "tmp").rmdir()


def jpeg_lossless(source: Path, target: Path) -> None:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()


if __name__ == "__main__":
    main()
