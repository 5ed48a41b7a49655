"""Output locations (PS3.19 §8.2.3): where hosted applications write what they produce.

* :mod:`.protocols`: which protocol (file:, http:) an application gets;
* :mod:`.locations`: issuing locations, their lifetime (active, returned, expired), what they received,
  where the bytes are now; the store side of http: uploads (write-once, quota, atomic store);
* :mod:`.area`: the on-disk layout of an instance's outputs and results;
* :mod:`.uris`: writing and reading back file: and http: location URIs;
* :mod:`.upload`: the WSGI application for ``/outputs/<token>/[name]`` (PUT/POST, GET/HEAD);
* :mod:`.body`: an upload's body, read past gunicorn's buffers and copied to disk with its SHA-256.
"""
