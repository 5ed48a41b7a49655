"""The kit's state machine in-process (client.state_machine): SetState answers from states.py, the action
carried out on the state-machine thread, the latest request winning over one not begun yet."""
from __future__ import annotations

import queue
import threading

import pytest

from client.state_machine import THREAD_NAME, ApplicationStateMachine
from hosting_service.states import Action, State

TARGET = {Action.START_TASK: State.INPROGRESS, Action.SUSPEND_TASK: State.SUSPENDED,
          Action.RESUME_TASK: State.INPROGRESS, Action.CANCEL_TASK: State.CANCELED,
          Action.FORGET_TASK: State.IDLE, Action.EXIT: State.EXIT}


class Recorder:
    """A machine whose actions enter their target state, optionally held until released."""

    def __init__(self) -> None:
        self.actions: "queue.Queue[tuple[Action, str]]" = queue.Queue()
        self.entered: list[tuple[State, State]] = []
        self.release = threading.Event()
        self.release.set()
        self.began = threading.Event()
        self.machine = ApplicationStateMachine(self.carry_out, lambda p, s: self.entered.append((p, s)))
        self.machine.start()

    def carry_out(self, action: Action) -> None:
        self.began.set()
        self.release.wait(10)
        self.machine.enter(TARGET[action])
        self.actions.put((action, threading.current_thread().name))

    def next_action(self) -> Action:
        action, thread = self.actions.get(timeout=10)
        assert thread == THREAD_NAME
        return action

    def settle(self) -> None:
        done = threading.Event()
        self.machine.run_later(done.set)
        assert done.wait(10)


@pytest.mark.parametrize("requested, answer, action", [
    (State.INPROGRESS, True, Action.START_TASK),
    (State.EXIT, True, Action.EXIT),
    (State.IDLE, True, None),  # the current state: ignored
    (State.COMPLETED, False, None),
    (State.CANCELED, False, None),
])
def test_answers_and_actions_from_idle(requested, answer, action):
    recorder = Recorder()
    assert recorder.machine.request(requested) is answer
    recorder.settle()
    if action is None:
        assert recorder.actions.empty() and recorder.machine.state is State.IDLE
    else:
        assert recorder.next_action() is action
        assert recorder.entered == [(State.IDLE, TARGET[action])]


def test_a_begun_change_is_the_state_later_requests_are_judged_from():
    recorder = Recorder()
    recorder.release.clear()  # START_TASK begins and holds
    assert recorder.machine.request(State.INPROGRESS)
    assert recorder.began.wait(10)
    assert recorder.machine.request(State.EXIT) is False, "judged from INPROGRESS, the change begun"
    assert recorder.machine.request(State.SUSPENDED) is True
    recorder.release.set()
    assert [recorder.next_action(), recorder.next_action()] == [Action.START_TASK, Action.SUSPEND_TASK]
    assert recorder.machine.state is State.SUSPENDED


def test_the_latest_request_wins_over_one_not_begun():
    recorder = Recorder()
    recorder.machine.run_later(lambda: recorder.release.wait(10))  # the thread is busy meanwhile
    recorder.release.clear()
    assert recorder.machine.request(State.INPROGRESS) is True
    assert recorder.machine.request(State.EXIT) is True  # judged from IDLE: INPROGRESS is abandoned
    recorder.release.set()
    assert recorder.next_action() is Action.EXIT
    recorder.settle()
    assert recorder.actions.empty() and recorder.entered == [(State.IDLE, State.EXIT)]
