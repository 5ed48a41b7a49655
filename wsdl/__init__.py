"""The normative PS3.19 Annex B WSDL and XSD files (interface version 20100825), shipped unchanged.

``HOST_SERVICE`` and ``APPLICATION_SERVICE`` are the folders holding each service's WSDL and its four
imported XSDs. The host serves these files (address rewritten) at ``?wsdl``; the zeep clients are built
from them, never from a generated WSDL.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HOST_SERVICE = ROOT / "HostService"
APPLICATION_SERVICE = ROOT / "ApplicationService"
HOST_SERVICE_WSDL = HOST_SERVICE / "HostService-20100825.wsdl"
APPLICATION_SERVICE_WSDL = APPLICATION_SERVICE / "ApplicationService-20100825.wsdl"
