"""The SOAP wire layer of both PS3.19 services: XML safety, tolerant normalisation, Spyne, faults, documents.

Importing the package makes spyne importable on every supported Python first (see :mod:`hosting_service.compat`).
"""
from hosting_service.compat import ensure_spyne_importable

ensure_spyne_importable()
