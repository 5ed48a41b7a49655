"""The Host's view of a hosted application: a zeep client of ApplicationService-20100825 at applicationURL.

The orchestration drives applications through this class; it keeps the per-call cost low (the WSDL is
parsed once per process, connections are reused where the peer allows it) because the state-change
round trip is on the critical path of every job.
"""
from __future__ import annotations

from typing import Optional

import wsdl
from client.data_exchange import DataExchangeClient
from client.soap import SoapCallError
from hosting_service.model import Rectangle
from hosting_service.states import State
from hosting_service.wire.types import APP

APPLICATION_BINDING = (
    "{http://dicom.nema.org/PS3.19/ApplicationService-20100825}ApplicationService-20100825Binding"
)


class ApplicationCallError(SoapCallError):
    """A call to the hosted application failed (unreachable, timeout, fault or unreadable answer)."""


class ApplicationClient(DataExchangeClient):
    """ApplicationService at ``application_url`` (PS3.19 §8.1 and §8.3)."""

    wsdl_path = wsdl.APPLICATION_SERVICE_WSDL
    binding = APPLICATION_BINDING
    wire_types = APP
    error = ApplicationCallError

    def get_state(self) -> State:
        """The application's current state (§8.1.1); also a liveness probe."""
        return self.call("GetState")

    def set_state(self, state: State) -> bool:
        """Ask for a state change (§8.1.2). TRUE means the change is allowed and will be made and
        notified; it does not mean the change has happened."""
        return self.call("SetState", state=state)

    def bring_to_front(self, location: Optional[Rectangle] = None) -> bool:
        """Ask the application to show itself, in ``location`` if given (§8.1.3)."""
        return self.call("BringToFront", location=location)
