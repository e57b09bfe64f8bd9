"""The ledger: what each registrant was sent, on SQLite or PostgreSQL, and the workers
sharing it.
"""
