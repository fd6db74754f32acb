"""Persistent state: agencies, systems, credentials, services, rights and the audit log."""

# The models of scheduled pulls live beside models.py (which stays under its size); they
# are imported here so that Base.metadata holds every table whatever module is imported.
from gateway.store import jobs as _jobs  # noqa: F401
