"""Cutting the offered inputs into tasks and a task's inputs into NotifyDataAvailable calls.

Both cuts rebuild Patient/Study/Series trees from the descriptors they keep, so every piece is a valid
AvailableData on its own (PS3.19 §9.2) and the app sees each object under the same patient, study and
series as in the whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from hosting_service.model import AvailableData, ObjectDescriptor, Patient, Series, Study, TreeBuilder, iter_descriptors

TASK_SCOPES = ("all", "patient", "study", "series")
"""``all``: one task for everything; otherwise one task per patient, study or series, as XIP iterates
over its targets. Objects above the target level (non-DICOM inputs at the top, study-level objects for
per-series tasks) go with every task below them."""

Entry = tuple[ObjectDescriptor, Optional[Patient], Optional[Study], Optional[Series]]


@dataclass
class Task:
    number: int
    label: str
    """What the task covers, for people: ``all inputs``, ``patient DH0001``, ``series 2.25.123...``."""
    data: AvailableData

    @property
    def object_count(self) -> int:
        return sum(1 for _ in iter_descriptors(self.data))


def regroup(entries: Iterable[Entry]) -> AvailableData:
    """The AvailableData tree that holds exactly ``entries`` (as yielded by ``iter_descriptors``), each node
    a copy of the one it came from."""
    tree = TreeBuilder()
    for descriptor, *nodes in entries:
        tree.add(descriptor, *[None if node is None else (id(node), node) for node in nodes])
    return tree.data


def split_tasks(data: AvailableData, scope: str) -> list[Task]:
    """One task per target of ``scope`` (see :data:`TASK_SCOPES`), in the order of the tree."""
    if scope not in TASK_SCOPES:
        raise ValueError(f"task scope must be one of {', '.join(TASK_SCOPES)}, got {scope!r}")
    entries = list(iter_descriptors(data))
    if scope == "all":
        return [Task(1, "all inputs", data)]
    level = TASK_SCOPES.index(scope)  # position in an Entry: 1 patient, 2 study, 3 series
    above = [e for e in entries if e[level] is None]
    targets: dict[int, list[Entry]] = {}
    for entry in entries:
        if entry[level] is not None:
            targets.setdefault(id(entry[level]), []).append(entry)
    if not targets:
        return [Task(1, "all inputs", data)]
    tasks = []
    for number, group in enumerate(targets.values(), 1):
        ancestors = group[0][1:level]
        inherited = [e for e in above if all(node is None or node is a for node, a in zip(e[1:level], ancestors))]
        tasks.append(Task(number, f"{scope} {_name(group[0][level])}", regroup([*inherited, *group])))
    return tasks


def _name(node) -> str:
    if isinstance(node, Patient):
        return node.ID or node.Name or "(no id)"
    if isinstance(node, Study):
        return node.StudyUID or "(no uid)"
    return node.SeriesUID or "(no uid)"


def batches(data: AvailableData, max_objects: int) -> list[AvailableData]:
    """``data`` cut into pieces of at most ``max_objects`` descriptors, for several NotifyDataAvailable
    calls (PS3.19 §8.3.1: the last one carries lastData=TRUE). Never empty: no inputs give one empty piece,
    which the standard allows for sending lastData=TRUE alone."""
    entries = list(iter_descriptors(data))
    if len(entries) <= max_objects:
        return [data]
    return [regroup(entries[i : i + max_objects]) for i in range(0, len(entries), max_objects)]
