"""The Python side of the PS3.19 protocol.

* :class:`ApplicationClient`: the Host's zeep client of a hosted application's ApplicationService;
* :class:`HostClient`: a hosted application's zeep client of the Host's HostService, with
  :meth:`HostClient.write_output` for output locations;
* :class:`HostedApplication`: a base class that turns a Python function from inputs to outputs into a
  conformant hosted application (see :mod:`client.hosted_app`).

Importing the package makes spyne importable on every supported Python first (see
:mod:`hosting_service.compat`).
"""
from hosting_service.compat import ensure_spyne_importable

ensure_spyne_importable()

from client.application_client import ApplicationCallError, ApplicationClient  # noqa: E402
from client.data_exchange import read_located  # noqa: E402
from hosting_service.located import UnreadableObject  # noqa: E402
from client.host_client import HostCallError, HostClient, OutputWriteError  # noqa: E402
from client.hosted_app import HostedApplication  # noqa: E402
from client.soap import SoapCallError  # noqa: E402
from client.task import TaskCanceled, TaskContext, TaskInput, TaskOutput  # noqa: E402

__all__ = [
    "ApplicationCallError",
    "ApplicationClient",
    "HostCallError",
    "HostClient",
    "HostedApplication",
    "OutputWriteError",
    "SoapCallError",
    "TaskCanceled",
    "TaskContext",
    "TaskInput",
    "TaskOutput",
    "UnreadableObject",
    "read_located",
]
