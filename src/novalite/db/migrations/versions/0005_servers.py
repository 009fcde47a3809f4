"""Servers: the instance columns the servers API serves, metadata, faults, instance actions and their
events, the migration columns of os-migrations, and where each service takes wake-up datagrams.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from novalite.db.models import Timestamp

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _soft_delete_columns() -> list[sa.Column]:
    return [
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=True),
        sa.Column("deleted_at", Timestamp, nullable=True),
        sa.Column("deleted", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("nudge_address", sa.String(255), nullable=True))

    with op.batch_alter_table("instances") as batch:
        for name, type_ in (
            ("power_state", sa.Integer()), ("display_name", sa.String(255)), ("display_description", sa.Text()),
            ("hostname", sa.String(255)), ("image_ref", sa.String(255)), ("instance_type_id", sa.Integer()),
            ("memory_mb", sa.Integer()), ("vcpus", sa.Integer()), ("root_gb", sa.Integer()),
            ("ephemeral_gb", sa.Integer()), ("flavor", sa.Text()), ("availability_zone", sa.String(255)),
            ("requested_availability_zone", sa.String(255)), ("key_name", sa.String(255)),
            ("reservation_id", sa.String(255)), ("launch_index", sa.Integer()), ("launched_at", Timestamp),
            ("terminated_at", Timestamp), ("progress", sa.Integer()), ("access_ip_v4", sa.String(39)),
            ("access_ip_v6", sa.String(39)), ("config_drive", sa.String(255)), ("user_data", sa.Text()),
            ("locked_by", sa.String(255)), ("evacuate_target_state", sa.String(255)),
            ("requested_host", sa.String(255)),
        ):
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column("locked", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("requested_host_forced", sa.Boolean(), nullable=False, server_default="0"))
    op.create_index("instances_project_id_deleted_idx", "instances", ["project_id", "deleted"])
    op.create_index("instances_task_state_idx", "instances", ["task_state"])

    with op.batch_alter_table("migrations") as batch:
        for name, type_ in (
            ("dest_host", sa.String(255)), ("old_instance_type_id", sa.Integer()),
            ("new_instance_type_id", sa.Integer()), ("user_id", sa.String(255)), ("project_id", sa.String(255)),
        ):
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column("hidden", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cross_cell_move", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("dest_forced", sa.Boolean(), nullable=False, server_default="0"))
    op.create_index("ix_migrations_status", "migrations", ["status"])

    op.create_table(
        "instance_metadata",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=True),
        *_soft_delete_columns(),
    )
    op.create_index("instance_metadata_instance_uuid_idx", "instance_metadata", ["instance_uuid"])
    op.create_table(
        "instance_faults",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        *_soft_delete_columns(),
    )
    op.create_index("instance_faults_instance_uuid_idx", "instance_faults", ["instance_uuid"])
    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("start_time", Timestamp, nullable=True),
        sa.Column("finish_time", Timestamp, nullable=True),
        sa.Column("message", sa.String(255), nullable=True),
        *_soft_delete_columns(),
    )
    op.create_index("instance_actions_instance_uuid_idx", "instance_actions", ["instance_uuid"])
    op.create_table(
        "instance_actions_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.Integer(), sa.ForeignKey("instance_actions.id"), nullable=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("start_time", Timestamp, nullable=True),
        sa.Column("finish_time", Timestamp, nullable=True),
        sa.Column("result", sa.String(255), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        *_soft_delete_columns(),
    )
    op.create_index("instance_actions_events_action_id_idx", "instance_actions_events", ["action_id"])
