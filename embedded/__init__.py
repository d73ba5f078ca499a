"""Embedded defaults: the Tansu broker and a Redis server, started by the project itself on loopback.

Used by ``make run`` (``python -m embedded.stack``) and by the integration tests. Production points the
worker at Apache Kafka and an external Redis instead, and nothing here is started.
"""
