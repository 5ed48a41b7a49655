"""Example hosted applications built on :class:`client.HostedApplication`.

* :mod:`client.examples.mip_app`: a maximum-intensity projection of the input CT series, written back as a
  DICOM Secondary Capture image through an http: output location;
* :mod:`client.examples.misbehaving_app`: a configurable misbehaving application for testing hosts.

Run either as ``python -m client.examples.<name> --hostURL U1 --applicationURL U2 [options]``.
"""
