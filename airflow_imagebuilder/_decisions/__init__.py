"""Decisions: pure rules, no I/O — request fields and patterns, image states, client tokens, the wait step, the
error table, failure diagnosis and the scan gate, lineage facets.  The Airflow-facing modules call them; they
import nothing of the provider's outside this package but its exceptions.  Internal: may change without notice.
"""
