"""Adapters: I/O that outlives one call — the async clients shared by the waits of a triggerer, and the SQS
reader of Image Builder's state change events.  They use the decisions, never the Airflow-facing modules.
Internal: may change without notice.
"""
