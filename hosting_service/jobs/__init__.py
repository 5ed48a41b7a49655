"""Jobs: hosted-application runs queued on the server and carried out by workers (``dicom-host worker``).

* :mod:`.registry`: the apps a deployment may run (``serve --apps FILE``);
* :mod:`.schema`: the job tables; :mod:`.records`: the queue and its leases in the store;
* :mod:`.uploads`: a tar stream (inputs, results) received to disk within bounds;
* :mod:`.results`: a job's folder on the data volume, results in and out;
* :mod:`.reaper`: expired leases taken back.

The admin API's routes for jobs are in :mod:`hosting_service.admin.jobs`.
"""
