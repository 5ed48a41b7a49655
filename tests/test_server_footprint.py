"""What a server worker carries before its first request: the WSGI application does not load pydicom or
numpy (about 27 MiB per worker); they come with the first GetData that transcodes or the first model."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_the_wsgi_application_loads_no_dicom_toolkit():
    code = ("import sys, hosting_service.app; "
            "print(sorted(m for m in ('pydicom', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
