"""The issue queue staff work every morning: one issue per problem in Redis, with its lifecycle.

``store.py`` applies issue events and staff transitions (Lua scripts) and reads pages of the queue;
``access.py`` scopes API tokens to shops; ``views.py`` labels, the day's queue, CSV for Excel.
"""
