"""Service discovery for callers, X-Road's listMethods, allowedMethods and getOpenAPI:
what a departmental system may call, learnt from the gateway itself rather than from
policy files or e-mail.

    catalogue.py   the answers: every enabled service with `may_call`, the services a
                   caller holds rights on with what is granted, one service's OpenAPI
                   document; each computed once per configuration version and caller
    grants.py      reading rights and schemas from the store
    openapi.py     building a service's OpenAPI 3.1 document
    cache.py       the per-version cache of answers

Everything is derived from configuration. Nothing on the exchange path (`/r1`) reads or
waits on this package; the HTTP handlers are in gateway/edge/discovery_api.py.
"""
