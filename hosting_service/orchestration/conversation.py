"""Talking to the launched application: its calls, SetState, and the waits for its notifications.

:class:`Application` is the application of one job once it has been launched: its process, its
ApplicationService client (connected when first needed) and the host's side of the state protocol. The
states it asks for and waits for come from :data:`hosting_service.states.HOST_ACTIONS`; notifications are
read from the store's event stream (:mod:`.feed`), never from inside a SOAP handler.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from hosting_service.orchestration.job import Job
from hosting_service.orchestration.outcome import AppEnded, JobFailure, Result
from hosting_service.orchestration.process import AppHandle
from hosting_service.states import HostAction, State

if TYPE_CHECKING:
    from client import ApplicationClient

T = TypeVar("T")
Since = Callable[[], Optional[int]]
"""The mark in the application's reported states from which a wait counts (``None``: not known yet)."""

WATCH_SECONDS = 0.25
"""Longest wait on the event stream before the process and the Ctrl-C flag are looked at again: a crash
is noticed within this time (plus one request), well inside a second."""
ENDING_SECONDS = 1.0
"""After a failed call, how long to wait for the application's end: a call fails first when it is dying,
and "it ended" is the better reason. A Python application's teardown after it closed its endpoint takes
well over 0.25 s on a loaded machine; the wait ends the moment the process does, and only a failed call
pays it."""


def fixed(mark: Optional[int]) -> Since:
    return lambda: mark


class Application:
    def __init__(self, job: Job, process: AppHandle):
        self.job = job
        self.process = process
        self.winding_down = False
        """Set once the host brings the application down: an interrupt no longer cancels anything."""
        self._client: Optional[ApplicationClient] = None
        self._requests = 0
        """SetState requests recorded so far: the next one's number (see ``InstanceView.request_marks``)."""

    @property
    def client(self) -> ApplicationClient:
        """The ApplicationService client, built on first use (zeep, spyne and the WSDL load in the
        background from the launch on)."""
        if self._client is None:
            from client import ApplicationClient

            self._client = ApplicationClient(self.job.instance["applicationURL"],
                                              timeout=self.job.options.call_timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def call(self, call: Callable[[ApplicationClient], T]) -> T:
        """``call(client)``; a failure is the application's (or a timeout), or its end if it is ending."""
        from client import ApplicationCallError

        try:
            return call(self.client)
        except ApplicationCallError as exc:
            if self.process.wait(ENDING_SECONDS) is not None:
                raise AppEnded(f"the application ended ({self.process.describe_exit()}) "
                               f"during {exc.operation}") from None
            import requests  # loaded with zeep by now

            timed_out = isinstance(exc.__cause__, requests.Timeout)
            raise JobFailure(Result.TIMEOUT if timed_out else Result.APP_FAILED, str(exc)) from None

    def poll(self) -> None:
        """Take in what the application reported so far."""
        self.job.server_call(lambda: self.job.feed.poll(0))

    @property
    def state(self) -> Optional[State]:
        return self.job.feed.view.state

    # --- the state protocol -------------------------------------------------------------------------------

    def act(self, action: HostAction, timeout: float, waiting_for: str, *, since: Optional[Since] = None,
            counting_from: Optional[float] = None) -> tuple[State, Since]:
        """Carry out ``action``: SetState(its request), if it has one, then wait until the application
        reports one of the states that settle it. Returns the state reached and the reports that follow it."""
        if action.request is None:
            since = since or self.from_now()
            reached = self.await_state(action.settles, since, timeout, waiting_for, counting_from=counting_from)
            return reached, fixed(self.job.feed.view.mark_after(set(action.settles), since()))
        return self.transition(action.request, action.settles)

    def transition(self, state: State, targets: frozenset[State]) -> tuple[State, Since]:
        """SetState(``state``) and wait until the application reports one of ``targets``. The time from the
        request to the notification seen goes into the manifest (``timings.stateRoundTrips``)."""
        job = self.job
        started = time.perf_counter()
        request = self._requests
        job.server_call(lambda: job.admin.record_requested_state(job.instance_id, state))
        self._requests += 1
        since = self.after_request(request)
        accepted = self.call(lambda app: app.set_state(state))
        if not accepted:
            self.poll()
            if job.feed.view.reached(set(targets), since()) is None:
                if self.state is State.EXIT:
                    raise AppEnded(f"the application left (EXIT) by itself, before SetState({state})")
                raise JobFailure(Result.APP_FAILED, f"the application refused SetState({state}) "
                                 f"while {self.state or 'starting'}")
        reached = self.await_state(targets, since, job.options.state_timeout, f"{state} after SetState({state})")
        job.manifest.timings.setdefault("stateRoundTrips", []).append(
            {"state": state.value, "ms": round((time.perf_counter() - started) * 1000, 2)})
        return reached, fixed(job.feed.view.mark_after(set(targets), since()))

    def after_request(self, request: int) -> Since:
        """States reported after the host's ``request``-th SetState was recorded."""
        return lambda: self.job.feed.view.request_mark(request)

    def from_now(self) -> Since:
        """States reported from now on (for waits that follow no request)."""
        return fixed(self.job.feed.view.mark())

    def await_state(self, targets: frozenset[State], since: Since, timeout: float, waiting_for: str, *,
                    counting_from: Optional[float] = None) -> State:
        """Wait until the application reports one of ``targets`` (after ``since``, or is in one now), for
        ``timeout`` seconds from ``counting_from`` (a ``time.monotonic()`` value; default now)."""
        deadline = (time.monotonic() if counting_from is None else counting_from) + timeout
        feed = self.job.feed
        wanted = set(targets)
        while True:
            reached = feed.view.reached(wanted, since())
            if reached is not None:
                return reached
            if self.process.poll() is not None:
                self.poll()  # a last notification may have come just before the end
                reached = feed.view.reached(wanted, since())
                if reached is not None:
                    return reached
                raise AppEnded(f"the application ended ({self.process.describe_exit()}) "
                               f"while the host waited for {waiting_for}")
            if feed.view.ended:
                raise JobFailure(Result.SERVER, f"the instance was ended on the server: {feed.view.ended}")
            self._check_cancel()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobFailure(Result.TIMEOUT, f"{waiting_for} did not come within {timeout:g} s "
                                 f"(the application is {feed.view.state or 'not yet IDLE'})")
            self.job.server_call(lambda: feed.poll(min(remaining, WATCH_SECONDS)))

    def _check_cancel(self) -> None:
        if not self.job.cancel_requested.is_set() or self.winding_down:
            return
        self.job.notice("canceling: the application is asked to stop (interrupt again to abort it at once)")
        raise JobFailure(Result.CANCELED, "canceled by the user")

    def hard_abort(self, why: str) -> None:
        how = self.process.abort()
        self.job.notice(f"hard abort ({why}): the application was {how}")
