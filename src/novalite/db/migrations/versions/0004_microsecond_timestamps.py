"""Microsecond timestamps on MySQL/MariaDB (DATETIME(6)); other backends already keep them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP_COLUMNS = {
    "services": ("created_at", "updated_at", "deleted_at", "last_seen_up"),
    "instances": ("created_at", "updated_at", "deleted_at"),
    "migrations": ("created_at", "updated_at", "deleted_at"),
    "compute_nodes": ("created_at", "updated_at", "deleted_at"),
    "flavors": ("created_at", "updated_at"),
    "flavor_extra_specs": ("created_at", "updated_at"),
    "flavor_projects": ("created_at", "updated_at"),
    "allocations": ("created_at", "updated_at"),
}
NOT_NULL = {"created_at"}


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, columns in TIMESTAMP_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=mysql.DATETIME(fsp=6), existing_type=sa.DateTime(),
                            existing_nullable=column not in NOT_NULL)
