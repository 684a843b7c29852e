"""The PostgreSQL adapters of the video ports, one room per capability.

``catalogue`` (list, get, get_many), ``removal`` (delete, trash, restore, the batches
of bulk deletes and sweeps), ``retention`` (periods, quotas, legal holds), ``figures``
(statistics and their fold), ``references`` (the keys rows still name) and
``deletions`` (the deletion queue and the audit log). What their statements share, the
tables, the columns read, the access scope and the filters, is ``query``.
"""
