"""Persistence: the database, its tables and the domain functions that read and change them."""
