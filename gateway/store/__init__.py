"""Persistent state: agencies, systems, credentials, services, rights and the audit log."""
