"""The PS3.19 state table (hosting_service.states) against the standard's Table 7.2-2, as SPEC-NOTES §4.3
derives it. The expectations are written out here independently of the table under test."""
import itertools

import pytest

from hosting_service.states import (
    PRECONDITIONS,
    PreconditionViolation,
    State,
    check_precondition,
    describe_notification,
    host_may_request,
    is_legal_notification,
    parse_state,
)

S = State
LEGAL = {
    (None, S.IDLE),
    (S.IDLE, S.INPROGRESS), (S.IDLE, S.EXIT),
    (S.INPROGRESS, S.SUSPENDED), (S.INPROGRESS, S.CANCELED), (S.INPROGRESS, S.COMPLETED),
    (S.SUSPENDED, S.INPROGRESS), (S.SUSPENDED, S.CANCELED),
    (S.COMPLETED, S.IDLE),
    (S.CANCELED, S.IDLE),
}
HOST_REQUESTS = {
    S.IDLE: [S.INPROGRESS, S.EXIT],
    S.INPROGRESS: [S.SUSPENDED, S.CANCELED],
    S.SUSPENDED: [S.INPROGRESS, S.CANCELED],
    S.COMPLETED: [S.IDLE],
    S.CANCELED: [],
    S.EXIT: [],
}


@pytest.mark.parametrize("source,target", list(itertools.product([None, *State], State)))
def test_every_notification_is_judged_as_table_7_2_2_says(source, target):
    expected = (source, target) in LEGAL or source == target
    assert is_legal_notification(source, target) is expected
    text = describe_notification(source, target)
    if not expected:
        assert "not a transition of PS3.19 Table 7.2-2" in text


@pytest.mark.parametrize("source", list(State))
def test_host_may_request(source):
    assert host_may_request(source) == HOST_REQUESTS[source]


def test_exit_is_reachable_only_from_idle():
    assert [s for s in [None, *State] if is_legal_notification(s, S.EXIT) and s != S.EXIT] == [S.IDLE]


EXPECTED_PRECONDITIONS = {
    "GetOutputLocation": {S.INPROGRESS, S.COMPLETED},
    "NotifyDataAvailable": {S.INPROGRESS},
    "GetData": {S.INPROGRESS, S.COMPLETED},
    "GetAsModels": {S.INPROGRESS, S.COMPLETED},
    "QueryModel": {S.INPROGRESS, S.COMPLETED},
    "QueryInfoSet": {S.INPROGRESS, S.COMPLETED},
}


@pytest.mark.parametrize("operation", sorted(PRECONDITIONS))
@pytest.mark.parametrize("state", [None, *State])
def test_preconditions(operation, state):
    allowed = EXPECTED_PRECONDITIONS.get(operation, {None, *State})
    if state in allowed:
        check_precondition(operation, state)
    else:
        with pytest.raises(PreconditionViolation) as info:
            check_precondition(operation, state)
        message = str(info.value)
        assert operation in message and ("NOT_STARTED" if state is None else state.value) in message
        assert all(s.value in message.split("allowed in:")[1] for s in allowed)


def test_parse_state_is_case_insensitive_and_strict():
    assert parse_state(" inprogress ") is S.INPROGRESS
    with pytest.raises(ValueError, match="not a PS3.19 State"):
        parse_state("CANCELLED")


# --- the application side (the hosted-application kit) ----------------------------------------------

@pytest.mark.parametrize("current,requested", list(itertools.product([None, *State], State)))
def test_an_application_answers_set_state_as_section_8_1_2_says(current, requested):
    from hosting_service.states import SetStateAnswer, answer_set_state

    answer = answer_set_state(current, requested)
    if requested == current:
        assert answer is SetStateAnswer.IGNORE and answer.result is True
    elif current is not None and requested in HOST_REQUESTS[current]:
        assert answer is SetStateAnswer.ACCEPT and answer.result is True
    else:
        assert answer is SetStateAnswer.REFUSE and answer.result is False


def test_every_host_request_has_one_application_action():
    from hosting_service.states import APPLICATION_ACTIONS, Action, application_action

    requests = {(s, t) for s, targets in HOST_REQUESTS.items() for t in targets}
    assert set(APPLICATION_ACTIONS) == requests
    assert application_action(S.INPROGRESS, S.CANCELED) is application_action(S.SUSPENDED, S.CANCELED) \
        is Action.CANCEL_TASK
    assert application_action(S.IDLE, S.INPROGRESS) is Action.START_TASK
    assert application_action(S.SUSPENDED, S.INPROGRESS) is Action.RESUME_TASK
    assert application_action(S.COMPLETED, S.IDLE) is Action.FORGET_TASK
    assert application_action(S.IDLE, S.EXIT) is Action.EXIT
    assert application_action(S.CANCELED, S.IDLE) is None, "the application's own move, not the host's"
