"""What parcelwatch talks about: its vocabulary (``vocabulary.py``: issue kinds, severities, statuses,
carriers, provinces, the time zone), the events it takes in (``events.py``) and what it knows of a parcel
(``state.py``)."""
