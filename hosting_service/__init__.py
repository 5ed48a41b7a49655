"""A DICOM PS3.19 Hosting System: the HostService endpoint, the session store, output locations, input
delivery and the orchestration of hosted applications. docs/ARCHITECTURE.md maps the packages."""
