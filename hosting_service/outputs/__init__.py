"""Output locations (PS3.19 §8.2.3): where hosted applications write what they produce.

* :mod:`.locations`: :class:`~.locations.OutputLocations`, the front the rest of the host uses;
* :mod:`.records`: the tables in the store, :class:`~.records.Location`, what the parts share;
* :mod:`.issuing`: GetOutputLocation (protocol, semantics, folder, URI);
* :mod:`.lifetime`: when a location closes (active, returned, expired) and retention of its data;
* :mod:`.writes`: the store side of http: uploads (write-once, quota, atomic store);
* :mod:`.resolution`: from an application's URI to where its bytes are now;
* :mod:`.inventory`: what each location received;
* :mod:`.protocols`: which protocol (file:, http:) an application gets;
* :mod:`.area`: the on-disk layout of an instance's outputs and results;
* :mod:`.uris`: writing and reading back file: and http: location URIs;
* :mod:`.upload`: the WSGI application for ``/outputs/<token>/[name]`` (PUT/POST, GET/HEAD);
* :mod:`.body`: an upload's body, read past gunicorn's buffers and copied to disk with its SHA-256.
"""
