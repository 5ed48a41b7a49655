"""``dicom-host run``: launching a hosted application and driving it through its tasks, apart from the SOAP
workers (:mod:`.runner` is the run's lifecycle, :mod:`.driver` the task protocol; see the runner's docstring
for the other parts)."""
