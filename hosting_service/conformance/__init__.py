"""``dicom-host conformance``: PS3.19 conformance tests in both directions.

* ``conformance app`` (:mod:`.app_suite`, :mod:`.app_scenarios`): launches a hosted application once per
  scenario and drives it from a scripted host (:mod:`.scripted_host`) that records every message and every
  write on the wire; each scenario cites the clause it tests and judges the application against the state
  table of :mod:`hosting_service.states`.
* ``conformance host`` (:mod:`.host_probe`): a hosted application that probes the HostService of whatever
  host launched it, from inside a real task, and hands its report back as its output.

Both produce :class:`~.verdicts.Result` lists, written by :mod:`.reports` as text, JUnit XML and JSON.
"""
