"""Cutting scanned inputs into tasks (one per patient, study or series) and into NotifyDataAvailable
batches: every piece is a valid tree and nothing is lost, duplicated or moved to another parent."""
from __future__ import annotations

import pytest

from hosting_service.dicom.inputs import scan
from hosting_service.dicom.samples import write_sample_series
from hosting_service.model import AvailableData, iter_descriptors
from hosting_service.orchestration.tasks import batches, split_tasks


@pytest.fixture(scope="module")
def offered(tmp_path_factory) -> AvailableData:
    """2 patients x 2 series x 3 slices, plus a non-DICOM file at the top level."""
    folder = tmp_path_factory.mktemp("inputs")
    write_sample_series(folder, slices=3, patients=2, series=2, size=8)
    (folder / "protocol.txt").write_text("scan protocol notes")
    return scan([folder]).available


def placement(data: AvailableData) -> set[tuple]:
    """Each descriptor with the identity of the patient, study and series it hangs under."""
    return {(d.DescriptorUuid, p and p.ID, st and st.StudyUID, se and se.SeriesUID)
            for d, p, st, se in iter_descriptors(data)}


@pytest.mark.parametrize("scope, count, per_task", [("all", 1, 13), ("patient", 2, 7), ("study", 2, 7),
                                                    ("series", 4, 4)])
def test_split_tasks(offered, scope, count, per_task):
    tasks = split_tasks(offered, scope)
    assert [t.number for t in tasks] == list(range(1, count + 1))
    assert all(t.object_count == per_task for t in tasks)  # the text file goes with every task
    assert set().union(*(placement(t.data) for t in tasks)) == placement(offered)
    top_level = {d.DescriptorUuid for d in offered.ObjectDescriptors}
    for task in tasks:
        assert {d.DescriptorUuid for d in task.data.ObjectDescriptors} == top_level
    if scope == "series":
        assert all(len(t.data.Patients) == 1 and len(t.data.Patients[0].Studies[0].Series) == 1 for t in tasks)
        assert tasks[0].label == f"series {tasks[0].data.Patients[0].Studies[0].Series[0].SeriesUID}"


def test_unknown_scope(offered):
    with pytest.raises(ValueError, match="task scope must be one of"):
        split_tasks(offered, "slice")


@pytest.mark.parametrize("size", [1, 5, 13, 1000])
def test_batches_keep_every_object_under_its_parents(offered, size):
    pieces = batches(offered, size)
    assert len(pieces) == -(-13 // size)
    counts = [sum(1 for _ in iter_descriptors(p)) for p in pieces]
    assert all(c <= size for c in counts) and sum(counts) == 13
    assert set().union(*(placement(p) for p in pieces)) == placement(offered)


def test_no_inputs_is_one_empty_batch():
    assert batches(AvailableData(), 10) == [AvailableData()]
