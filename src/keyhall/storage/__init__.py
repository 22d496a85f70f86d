"""Persistence: SQLAlchemy tables, repositories, the engine factory and Alembic migrations.

The only package that imports SQLAlchemy.
"""
