"""ReleaseData on an application's outputs, once the host has read them: sent, skipped or failed, never fatal.

PS3.19 §8.3.6: the recipient of data releases what GetData handed out. By the time the task driver calls
:func:`release_outputs`, every output has been read into the output folder, so nothing that happens here
may turn the completed task into a failed one:

* a CTK-style application (:mod:`hosting_service.peers`: its own requests said so) is not sent ReleaseData
  at all: every CTK application aborts on it. A ``warning`` event says why (it reaches the manifest's
  ``warnings`` and the terminal through the event feed);
* any other application is sent ReleaseData; when the call fails (no answer, a fault, the connection
  closed because the application died), a ``warning`` event says so and the run goes on. Whether the
  application is still alive is for the next step (SetState(IDLE)) to find out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hosting_service.peers import PEER_EVENT, ctk_evidence

if TYPE_CHECKING:
    from client import ApplicationClient
    from hosting_service.admin.client import AdminClient

RELEASED = "released"
SKIPPED = "skipped"
FAILED = "failed"
NOTHING = "nothing to release"


def release_outputs(app: "ApplicationClient", admin: "AdminClient", instance_id: str, locator_ids: list[str]) -> str:
    """Release ``locator_ids`` (the ``Locator`` UUIDs of the application's GetData answer) unless the
    application is CTK-style; returns what happened (:data:`RELEASED`, :data:`SKIPPED`, :data:`FAILED` or
    :data:`NOTHING`). Raises only :class:`~hosting_service.admin.client.AdminError` (the server)."""
    from client import ApplicationCallError

    if not locator_ids:
        return NOTHING
    events, _ = admin.events(instance_id, kinds=[PEER_EVENT])
    evidence = ctk_evidence(events)
    if evidence is not None:
        admin.add_event(instance_id, "warning", {
            "operation": "ReleaseData",
            "message": f"ReleaseData not sent: the application is a CTK application ({'; '.join(evidence)}), "
                       "and every CTK application aborts on ReleaseData (std::bad_cast; the connection closes "
                       f"without an answer). Its outputs had been read already ({len(locator_ids)} locators).",
        })
        return SKIPPED
    try:
        app.release_data(locator_ids)
    except ApplicationCallError as exc:
        admin.add_event(instance_id, "warning", {
            "operation": "ReleaseData",
            "message": f"ReleaseData failed after the outputs had been read (they are kept): {exc.reason}",
        })
        return FAILED
    return RELEASED
