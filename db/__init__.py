"""Everything the service keeps in PostgreSQL: the schema, the queue and its notifications.

`db` imports neither `api` nor `engine`; both of them import `db`.
"""
