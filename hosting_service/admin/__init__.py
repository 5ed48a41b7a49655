"""The admin API (:mod:`.api`, served under ``/admin/``) and its client (:mod:`.client`)."""
