"""The hosted application of ``job_overhead.py``: as little work as a full task allows.

Hosted (``--hostURL U1 --applicationURL U2``) it goes through the whole protocol with the
:class:`client.HostedApplication` kit: IDLE, INPROGRESS, GetData of every input, one output (a JSON summary
of the inputs) written to an output location and announced, COMPLETED, IDLE, EXIT.

Standalone (``--standalone INPUT_DIR OUTPUT_FILE``) it is the same program doing the same work without a
host: the same imports, the same inputs read from disk, the same output written. The difference of the two
wall times is what hosting costs.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from client.hosted_app import HostedApplication
from client.task import TaskOutput


def summary(blobs: list[bytes]) -> bytes:
    """The one output: how many inputs, how many bytes, and a digest over all of them."""
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(blob)
    return json.dumps({"inputs": len(blobs), "bytes": sum(map(len, blobs)), "sha256": digest.hexdigest()}).encode()


class TrivialApp(HostedApplication):
    name = "trivial-app"
    description = "Summarises its inputs in one JSON output."

    def process(self, inputs, context):
        return [TaskOutput(name="summary.json", data=summary([i.data for i in inputs]), mime_type="application/json")]


def standalone(input_dir: Path, output: Path) -> int:
    files = sorted(p for p in input_dir.rglob("*") if p.is_file())
    output.write_bytes(summary([p.read_bytes() for p in files]))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--standalone"]:
        sys.exit(standalone(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit(TrivialApp.main())
