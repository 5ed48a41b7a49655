"""The two PS3.19 SOAP services as Spyne ``ServiceBase`` classes: :data:`HostService` and :data:`ApplicationService`.

The methods are generated from the operations of :mod:`.types` (which reads them from the XSD), so every
operation has exactly the standard's request children and ``<Op>Response``/``<Op>Result`` elements,
document/literal wrapped, with an empty ``<Op>Response`` for the void ones. Each method converts its
arguments to model values and calls the operations object the router put in the WSGI environ
(``environ["dicom_host.operations"]``: :class:`hosting_service.operations.HostOperations` on the Host,
``client.HostedApplication`` in an application), by wire name with wire argument names as keywords, then
converts the result back. Absent or nil arguments arrive as ``None``.

An operations object may also have ``admits(operation_name) -> bool``, asked by the endpoint before the
request's arguments are read (see :func:`admits`).
"""
from __future__ import annotations

from typing import Any

from spyne import ServiceBase, rpc

from hosting_service.wire.convert import args_from_wire, to_spyne
from hosting_service.wire.types import APP, HOST, Operation, WireTypes

OPERATIONS_KEY = "dicom_host.operations"
"""WSGI environ key of the object implementing the service's operations."""


def admits(implementation: Any, operation: str) -> bool:
    """Whether ``implementation`` takes ``operation`` now, by its ``admits`` method (the host: the
    operation's precondition for the instance's state); without one, every operation is admitted.

    When this says no the endpoint calls the operation without arguments, and the operation refuses by
    itself, as it would have with them: the arguments of a call that is refused are never read.
    """
    check = getattr(implementation, "admits", None)
    return check is None or bool(check(operation))


def _method(operation: Operation):
    """A Spyne ``@rpc`` method that forwards ``operation`` to the environ's operations object."""

    def method(ctx, *values: Any) -> Any:
        implementation = ctx.transport.req_env[OPERATIONS_KEY]
        result = getattr(implementation, operation.name)(**args_from_wire(operation, values))
        return None if operation.result is None else to_spyne(result, operation.result.type)

    method.__name__ = method.__qualname__ = operation.name
    result = {}
    if operation.result is not None:
        result = {"_returns": operation.result.type, "_out_variable_name": operation.result.name}
    return rpc(
        *(arg.type for arg in operation.args),
        _args=tuple(arg.name for arg in operation.args),
        _body_style="wrapped",
        **result,
    )(method)


def make_service(types: WireTypes, name: str) -> type[ServiceBase]:
    """A ServiceBase subclass with one method per operation of ``types``; ``wire_types`` refers back to them."""
    attrs: dict[str, Any] = {op.name: _method(op) for op in types.operations.values()}
    attrs["wire_types"] = types
    attrs["__doc__"] = f"The PS3.19 operations of {types.namespace}, forwarded to environ[{OPERATIONS_KEY!r}]."
    return type(name, (ServiceBase,), attrs)


HostService = make_service(HOST, "HostService")
"""HostService-20100825: the 12 operations a Hosting System serves at hostURL."""

ApplicationService = make_service(APP, "ApplicationService")
"""ApplicationService-20100825: the 10 operations a Hosted Application serves at applicationURL."""
