"""The stream's core, free of Faust: event in -> parcel state -> detectors -> issue events.

``processor.py`` applies events and sweeps deadlines (``deadline_index.py``); ``orders.py`` merges order
events into snapshots for each parcel; ``clock.py`` is the clock a partition catching up on a backlog judges
at; ``notifications.py`` the buyer notification rules; ``replay.py`` runs the same code over a file in event
time. The live worker (``agents/``) hands it Faust tables; replay and tests hand it dicts.
"""
