"""Events: topics that provider systems publish to, subscriptions of departmental
systems, and delivery by Standard Webhooks (docs/developer.md "Events").

    model.py      an event as published, delivered and pulled; subscription filters
    secrets.py    the subscriptions' signing secrets, encrypted at rest
    signing.py    Standard Webhooks headers for one delivery attempt
    store.py      the event store interface and its embedded implementation (tables)
    kafka_store.py  the Kafka implementation: events topic, fan-out, parked deliveries
    kafka_delivery.py  the delivery-queue consumer of the Kafka implementation
    retry.py      when to try again: exponential backoff, jitter, Retry-After
    delivery.py   the delivery worker `lgsp serve` runs
    audit.py      audit events for publishes, pulls and delivery attempts

The store is one interface (`EventStore`): the embedded implementation keeps events and
deliveries in the gateway's database; the Kafka one (`events_store = "kafka"`) keeps them
on Kafka topics, and only retries and dead letters in the database.
"""
