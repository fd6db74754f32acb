"""Administering the gateway: changing its policy as one version at a time, and its
clients' credentials, for an `Actor` (a client of the admin API, a person at the console).

Nothing here knows about HTTP: the admin API (gateway/edge/admin_api/) parses a request,
calls an operation and renders its answer, then reloads its gateway's tables.
"""
