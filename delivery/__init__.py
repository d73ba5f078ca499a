"""How records reach the broker, and when offsets may be committed: "acknowledged before committed".

``checkpoint.py`` holds the commit order and lists its steps. Around it: the changelog writer (``changelog.py``),
staged table writes (``staging.py``), batch records and the partitioner (``batch_records.py``), the ingest
endpoints' record batcher (``record_batcher.py``), dead letters (``dead_letters.py``), every override of Faust
and aiokafka in one documented order (``framework.py``) and the embedded Tansu broker's differences (``tansu.py``).
"""
