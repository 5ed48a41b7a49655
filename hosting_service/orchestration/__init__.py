"""``dicom-host run``: launching a hosted application and driving it through its tasks, apart from the SOAP
workers (:mod:`.runner` is the driver; the other modules are its parts)."""
