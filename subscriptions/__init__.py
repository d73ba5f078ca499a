"""Registering shipped parcels with the tracking aggregator, so that its pushes arrive for every parcel.

When an order ships, its parcel must be subscribed with the aggregator (kuaidi100, AfterShip, 17TRACK or
kdniao), or no scan of it ever reaches ``/ingest/...``. The road:

1. ``agents/subscriptions.py`` reads every ``shipped`` order event and forwards the parcel (keyed by parcel)
   to the subscriptions topic; a second agent files it in Redis (``store.py``), once per parcel.
2. ``registrar.py``, beside the stream in every worker, registers what is due at the vendor's documented
   rate (shared by all workers), retries temporary failures with backoff, and raises a
   ``tracking_unregistered`` issue for staff when a parcel cannot be registered at all.
3. ``vendors.py``: each vendor's request and the meaning of its answers, from its documentation.
4. ``carriers.py``: each aggregator's registration code for a canonical carrier (names and pushed codes are
   resolved by ``ingest.carriers.resolve``).
5. ``cli.py``: ``python app.py register-parcels``: past parcels in bulk, or failed ones again.
"""
