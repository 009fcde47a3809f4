"""Allocations (what the scheduler claimed on each node) and the node's inventory generation.

compute_nodes keeps what a host's agent reports; allocations hold what the scheduler has claimed
there, as placement separates inventories from allocations. ``generation`` changes with every
claim and release on the node (placement's resource-provider generation); the reserved_host_*
columns are the agent's reserved amounts, under the names of Nova's options.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_host_cpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_host_memory_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserved_host_disk_mb", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("consumer_uuid", sa.String(36), nullable=False),
        sa.Column("compute_node_id", sa.Integer(), sa.ForeignKey("compute_nodes.id"), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("disk_gb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("consumer_uuid", "compute_node_id",
                            name="uniq_allocations0consumer_uuid0compute_node_id"),
    )
    op.create_index("allocations_compute_node_id_idx", "allocations", ["compute_node_id"])
