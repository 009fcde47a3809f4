"""Hypervisors (compute_nodes) and flavors with extra specs and project access.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _times() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=True)]


def upgrade() -> None:
    op.create_table(
        "compute_nodes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("hypervisor_hostname", sa.String(255), nullable=False),
        sa.Column("hypervisor_type", sa.String(255), nullable=False),
        sa.Column("hypervisor_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("host_ip", sa.String(39), nullable=True),
        sa.Column("cpu_info", sa.Text(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("local_gb", sa.Integer(), nullable=False),
        sa.Column("vcpus_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("memory_mb_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("local_gb_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("running_vms", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("disk_available_least", sa.Integer(), nullable=True),
        sa.Column("cpu_allocation_ratio", sa.Float(), nullable=False, server_default="1.0"),
        sa.Column("ram_allocation_ratio", sa.Float(), nullable=False, server_default="1.0"),
        sa.Column("disk_allocation_ratio", sa.Float(), nullable=False, server_default="1.0"),
        *_times(),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("host", "hypervisor_hostname", "deleted",
                            name="uniq_compute_nodes0host0hypervisor_hostname0deleted"),
    )
    op.create_table(
        "flavors",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flavorid", sa.String(255), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ephemeral_gb", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("swap", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rxtx_factor", sa.Float(), nullable=False, server_default="1.0"),
        sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text(), nullable=True),
        *_times(),
    )
    op.create_table(
        "flavor_extra_specs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flavor_id", sa.Integer(), sa.ForeignKey("flavors.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        *_times(),
        sa.UniqueConstraint("flavor_id", "key", name="uniq_flavor_extra_specs0flavor_id0key"),
    )
    op.create_table(
        "flavor_projects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flavor_id", sa.Integer(), sa.ForeignKey("flavors.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        *_times(),
        sa.UniqueConstraint("flavor_id", "project_id", name="uniq_flavor_projects0flavor_id0project_id"),
    )
