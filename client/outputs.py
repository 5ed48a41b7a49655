"""A task's outputs on the application side: written to the host's output locations, announced with
NotifyDataAvailable, and served to the host's GetData (PS3.19 §8.2.3, §8.3.1, §8.3.2)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from client.models import OutputModels
from client.task import TaskOutput, announcement
from hosting_service.errors import ClientError
from hosting_service.model import (
    AvailableData,
    ModelSetDescriptor,
    ObjectLocator,
    QueryResult,
    QueryResultInfoSet,
)

if TYPE_CHECKING:
    from client.host_client import HostClient


@dataclass
class Delivered:
    """An output written to an output location and announced to the host."""

    output: TaskOutput
    uri: str
    length: int


class DeliveredOutputs:
    """The outputs of one task, by the descriptor UUID they were announced under, and the same outputs as
    Native DICOM Models (:class:`client.models.OutputModels`), released with the task at IDLE."""

    def __init__(self) -> None:
        self._by_uuid: dict[str, Delivered] = {}
        self.models = OutputModels()

    def __bool__(self) -> bool:
        return bool(self._by_uuid)

    def write(self, host: "HostClient", outputs: Sequence[TaskOutput], protocols: Sequence[str],
              before_each: Callable[[], None]) -> None:
        """Write ``outputs`` to output locations from GetOutputLocation (``protocols`` in order of
        preference): all to one directory-like location, or one file-like location each.
        ``before_each()`` runs before every call to the host (it may raise to stop)."""
        names = [output.name for output in outputs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"process() returned several outputs named {', '.join(duplicates)}")
        location: Optional[str] = None
        for output in outputs:
            before_each()
            if location is None or not location.endswith("/"):  # a file-like location holds one object
                location = host.get_output_location(protocols)
            uri = host.write_output(location, output.name, output.source)
            self._by_uuid[str(uuid.uuid4())] = Delivered(output, uri, output.size)

    def announcement(self) -> AvailableData:
        return announcement((descriptor_uuid, d.output) for descriptor_uuid, d in self._by_uuid.items())

    def locators(self, requested: Sequence[str]) -> list[ObjectLocator]:
        """GetData: one locator per requested UUID, in the order asked, pointing at the URI the output was
        written to (Offset 0), in the transfer syntax it was written in (the application does not
        transcode). A BulkData UUID of the outputs' models gets the locator of its bytes (§8.3.2). An
        unknown UUID is the host's mistake (:class:`ClientError`)."""
        wanted = [u.strip() for u in requested if u and u.strip()]
        bulk = self.models.bulk_locators(wanted)
        unknown = [u for u in wanted if u.lower() not in self._by_uuid and u.lower() not in bulk]
        if unknown:
            raise ClientError(f"GetData: not announced by this application: {', '.join(unknown[:5])}")
        locators = []
        for requested_uuid in wanted:
            delivered = self._by_uuid.get(requested_uuid.lower())
            locators.append(bulk[requested_uuid.lower()] if delivered is None else ObjectLocator(
                Length=delivered.length,
                Offset=0,
                TransferSyntax=delivered.output.transfer_syntax_uid,
                URI=delivered.uri,
                Locator=str(uuid.uuid4()),
                Source=requested_uuid,
            ))
        return locators

    # --- the outputs as models (§8.3.3-§8.3.5, §8.3.7) -----------------------------------------------

    def get_as_models(self, objects: Sequence[str], class_uid: str,
                      supported_info_set_types: Optional[Sequence[str]]) -> ModelSetDescriptor:
        return self.models.get_as_models(self._by_uuid, [u.strip() for u in objects if u and u.strip()],
                                         class_uid.strip(), None if supported_info_set_types is None else list(supported_info_set_types))

    def query_model(self, models: Sequence[str], xpaths: Sequence[str]) -> list[QueryResult]:
        return self.models.query_model(list(models), list(xpaths))

    def query_info_set(self, models: Sequence[str], xpaths: Sequence[str]) -> list[QueryResultInfoSet]:
        return self.models.query_info_set(list(models), list(xpaths))

    def release_models(self, models: Sequence[str]) -> None:
        self.models.release(list(models))
