"""Exit statuses of ``dicom-host``, shared by every subcommand (``run`` adds its own for job outcomes)."""

EXIT_OK = 0
EXIT_USAGE = 2
"""Bad usage or configuration (the message says what)."""
EXIT_SERVER = 3
"""The server or its admin API could not be reached or refused."""
EXIT_APP_FAILED = 4
"""``run``: the application failed (crash, FATALERROR, refusal, protocol error)."""
EXIT_TIMEOUT = 5
"""``run``: a timeout (startup, state change, task, call)."""
EXIT_CANCELED = 6
"""``run``: canceled by the user."""
EXIT_INTERNAL = 70
"""``run``: a defect of dicom-host itself (EX_SOFTWARE)."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C) outside a job: 128 + SIGINT."""
