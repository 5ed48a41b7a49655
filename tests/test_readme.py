"""README's application example runs as written: its code block is extracted and run under dicom-host run."""
import re
import subprocess
import sys

import pydicom

from conftest import REPO
from hosting_service.dicom.samples import write_sample_series


def test_readme_application_example(host_server, tmp_path):
    readme = (REPO / "README.md").read_text()
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "HostedApplication" in block]
    app = tmp_path / "example_app.py"
    app.write_text(example)
    sources = write_sample_series(tmp_path / "in", slices=2, size=16)
    run = subprocess.run(
        [sys.executable, "-m", "hosting_service.cli.main", "run", "--server", host_server.url,
         "--app", f"{sys.executable} {app}", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    outputs = sorted(tmp_path.glob("out/*.dcm"))
    assert len(outputs) == 2
    originals = {pydicom.dcmread(p).InstanceNumber: pydicom.dcmread(p).pixel_array for p in sources}
    for path in outputs:
        result = pydicom.dcmread(path)
        source = originals[result.InstanceNumber]
        assert (result.pixel_array == source.max() - source).all()
