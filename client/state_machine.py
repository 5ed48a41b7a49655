"""The application side of the PS3.19 state machine (§7.2, §8.1.2), with the rules of
:mod:`hosting_service.states` (:func:`~hosting_service.states.answer_set_state`,
:data:`~hosting_service.states.APPLICATION_ACTIONS`).

Changes run on one thread, the state-machine thread, so ``SetState`` returns at once and leaves its
change *pending* for that thread. The latest request wins (§8.1.2): a request is judged from the current
state, abandoning any pending change; it answers TRUE for the current state (ignored; a pending change is
dropped), FALSE for a change the table does not let the host request (a pending change stays), and TRUE
otherwise (it becomes the pending change). Once the thread has begun a change it can no longer be
abandoned, and requests are judged from that change's target. A pending change that the application's
own move (COMPLETED, a failure) made illegal by the time it runs is dropped.

Whatever else must happen in order with the changes (the application's own moves) is queued on the same
thread with :meth:`ApplicationStateMachine.run_later`.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from hosting_service.states import Action, SetStateAnswer, State, answer_set_state, application_action

log = logging.getLogger("dicom_host.hosted_app")

THREAD_NAME = "state-machine"


class ApplicationStateMachine:
    """The application's state, the host's pending request and the thread that carries requests out.

    ``carry_out(action)`` performs a host-requested change (it calls :meth:`enter` for the states it
    takes); ``entered(previous, state)`` is called after every :meth:`enter`."""

    def __init__(self, carry_out: Callable[[Action], None], entered: Callable[[State, State], None]):
        self._carry_out_action = carry_out
        self._entered = entered
        self._lock = threading.Lock()
        self._state = State.IDLE
        self._pending: Optional[State] = None
        """The latest SetState target the thread has not begun (a later request may abandon it)."""
        self._changing: Optional[State] = None
        """The target of the requested change the thread has begun but not entered yet."""
        self._commands: "queue.Queue[Callable[[], None]]" = queue.Queue()

    @property
    def state(self) -> State:
        return self._state

    def start(self) -> None:
        """Start the state-machine thread (after the first IDLE has been announced)."""
        threading.Thread(target=self._work, name=THREAD_NAME, daemon=True).start()

    def run_later(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the state-machine thread, after what is queued before it."""
        self._commands.put(command)

    def request(self, state: State) -> bool:
        """The host's ``SetState(state)``: the answer, the change left pending (see the module docstring)."""
        with self._lock:
            current = self._state if self._changing is None else self._changing
            answer = answer_set_state(current, state)
            if answer is SetStateAnswer.REFUSE:
                log.info("SetState(%s) refused: Table 7.2-2 has no host-requested %s -> %s", state, current, state)
                return False
            abandoned, self._pending = self._pending, (state if answer is SetStateAnswer.ACCEPT else None)
        if abandoned not in (None, state):
            log.info("SetState(%s): the pending %s is abandoned (§8.1.2: the latest request wins)", state, abandoned)
        if answer is SetStateAnswer.ACCEPT:
            self.run_later(self._begin_pending)
        return True

    def enter(self, state: State) -> None:
        """Take ``state`` (a requested change or the application's own move), then report it."""
        with self._lock:
            previous, self._state, self._changing = self._state, state, None
        self._entered(previous, state)

    def _work(self) -> None:
        while True:
            command = self._commands.get()
            try:
                command()
            except Exception:
                log.exception("state machine: %s failed", getattr(command, "func", command).__name__)

    def _begin_pending(self) -> None:
        """Begin the pending change, if any: :meth:`request` queues this once per accepted change, and a
        later request may have replaced the change (then the first call carries out the latest) or
        abandoned it."""
        with self._lock:
            target, self._pending = self._pending, None
            current = self._state
            if target is None:
                return
            action = application_action(current, target)
            if action is None:
                log.info("SetState(%s) dropped: the application has moved to %s by itself since", target, current)
                return
            self._changing = target  # no longer abandonable; enter() clears it
        try:
            self._carry_out_action(action)
        finally:
            with self._lock:
                self._changing = None  # in case the change failed before entering its state
