"""Alembic migrations; shipped inside the package as fitboard.migrations."""
