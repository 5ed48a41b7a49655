"""Bringing the application down, whatever happened: by the legal paths of PS3.19 Table 7.2-2 as
:data:`hosting_service.states.WIND_DOWN` lays them out (INPROGRESS -> CANCELED -> IDLE, COMPLETED -> IDLE,
IDLE -> EXIT), then a hard abort (SIGTERM, then SIGKILL, to its process group) when it does not follow."""
from __future__ import annotations

from hosting_service.orchestration.conversation import Application
from hosting_service.orchestration.outcome import AppEnded, JobFailure
from hosting_service.states import WIND_DOWN, State


def wind_down(app: Application) -> None:
    """Walk the application to EXIT, give it ``exit_grace`` seconds to end once it was asked to, and
    hard-abort it when it does not follow; whatever it left in its process group is ended too."""
    options = app.job.options
    app.winding_down = True
    asked_to_exit = False
    try:
        for _ in range(len(WIND_DOWN)):
            app.poll()
            state = app.state
            if app.process.poll() is not None or state is None or state not in WIND_DOWN:
                break  # ended, EXIT, or never IDLE: nothing to ask of it
            action = WIND_DOWN[state]
            asked_to_exit = action.request is State.EXIT
            app.act(action, options.state_timeout, f"{'/'.join(sorted(action.settles))} after {state}")
    except AppEnded:
        pass
    except JobFailure as failure:
        app.job.notice(f"while stopping the application: {failure.outcome.reason}")
    leaving = asked_to_exit or app.state is State.EXIT
    if app.process.wait(options.exit_grace if leaving else 0) is None:
        app.hard_abort("it did not end by itself" if leaving else "it did not come to IDLE")
    else:
        app.process.abort()  # ends whatever it left behind in its process group
    app.job.manifest.milestone("exit")
