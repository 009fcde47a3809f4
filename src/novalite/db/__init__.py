"""Storage: SQLAlchemy models, engine set-up, queries and alembic migrations."""
