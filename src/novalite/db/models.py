"""The database tables, in Nova's shape (soft delete through a ``deleted`` column, as Nova does)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import literal_column

# Microsecond timestamps on every backend: MySQL/MariaDB's DATETIME keeps whole seconds unless told
# otherwise, and heartbeat times and updated_at must not lose their fraction there.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class SoftDelete:
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    # 0 while live; the row's id once soft-deleted, so unique keys can repeat after a delete.
    deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Service(SoftDelete, Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    binary: Mapped[str] = mapped_column(String(255), nullable=False)
    topic: Mapped[str | None] = mapped_column(String(255), nullable=True)
    report_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    forced_down: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # novalite's own: "host:port" where the service takes wake-up datagrams ("there is work for you"),
    # given by the agent (nova-compute) or the scheduler when it registers. Nova uses its message bus.
    nudge_address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # novalite's own: 0 at insert, one more at every UPDATE that SQLAlchemy runs (its onupdate, written into the
    # statement itself), so a row's row_version changes whenever the row does. An API process keeps the rows it
    # listed and reads only the versions to know which changed (novalite.domain.service_listing).
    row_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0",
                                             onupdate=literal_column("row_version") + 1)


class Instance(SoftDelete, Base):
    """A server, with the columns of Nova's instances table that novalite serves.

    The flavor is copied in at boot (memory_mb, vcpus, root_gb, ephemeral_gb, and the whole flavor as
    JSON in ``flavor``, Nova's instance_extra.flavor), so a later change of the flavor leaves it alone.
    """

    __tablename__ = "instances"
    __table_args__ = (
        Index("instances_project_id_deleted_idx", "project_id", "deleted"),
        Index("instances_task_state_idx", "task_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    project_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vm_state: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task_state: Mapped[str | None] = mapped_column(String(255), nullable=True)
    power_state: Mapped[int | None] = mapped_column(Integer, nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    display_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    image_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    instance_type_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    root_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ephemeral_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flavor: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON snapshot of the flavor at boot
    # The zone the server is in (set when placed) and the one its creator asked for (2.96's pinned zone).
    availability_zone: Mapped[str | None] = mapped_column(String(255), nullable=True)
    requested_availability_zone: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reservation_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    launch_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    launched_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    progress: Mapped[int | None] = mapped_column(Integer, nullable=True)
    access_ip_v4: Mapped[str | None] = mapped_column(String(39), nullable=True)
    access_ip_v6: Mapped[str | None] = mapped_column(String(39), nullable=True)
    config_drive: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    locked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The power state the server ends in after an evacuation: "stopped" from 2.95 (spec 6), else None.
    evacuate_target_state: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # novalite's own, Nova keeps these in the request spec: the host a new server was asked for (2.74
    # ``host``, or an admin's "zone:host"), and whether it was forced there (filters skipped).
    requested_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    requested_host_forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")


class InstanceMetadata(SoftDelete, Base):
    """A server's metadata key/value pairs (Nova's instance_metadata)."""

    __tablename__ = "instance_metadata"
    __table_args__ = (Index("instance_metadata_instance_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    value: Mapped[str | None] = mapped_column(String(255), nullable=True)


class InstanceFault(SoftDelete, Base):
    """Why a server went to ERROR (Nova's instance_faults); the newest one is the server's "fault"."""

    __tablename__ = "instance_faults"
    __table_args__ = (Index("instance_faults_instance_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), nullable=False)
    code: Mapped[int] = mapped_column(Integer, nullable=False)
    message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)


class InstanceAction(SoftDelete, Base):
    """One user-visible action on a server (Nova's instance_actions): create, stop, evacuate, …"""

    __tablename__ = "instance_actions"
    __table_args__ = (Index("instance_actions_instance_uuid_idx", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(255), nullable=False)
    instance_uuid: Mapped[str] = mapped_column(String(36), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    finish_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    message: Mapped[str | None] = mapped_column(String(255), nullable=True)


class InstanceActionEvent(SoftDelete, Base):
    """One step of an action, done by a service (Nova's instance_actions_events)."""

    __tablename__ = "instance_actions_events"
    __table_args__ = (Index("instance_actions_events_action_id_idx", "action_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("instance_actions.id"), nullable=False)
    event: Mapped[str] = mapped_column(String(255), nullable=False)
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    finish_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    result: Mapped[str | None] = mapped_column(String(255), nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)


class Migration(SoftDelete, Base):
    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    instance_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    source_compute: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    source_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_compute: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    dest_node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    migration_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    old_instance_type_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_instance_type_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hidden: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    cross_cell_move: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # novalite's own: the evacuation's host was forced (2.29-2.67 force=true), so the scheduler's filters
    # are skipped for it (Nova carries this in the request spec).
    dest_forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")


class ComputeNode(SoftDelete, Base):
    """A hypervisor: the capacity one compute host reports (Nova's compute_nodes)."""

    __tablename__ = "compute_nodes"
    __table_args__ = (
        UniqueConstraint("host", "hypervisor_hostname", "deleted",
                         name="uniq_compute_nodes0host0hypervisor_hostname0deleted"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    service_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    hypervisor_hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    hypervisor_type: Mapped[str] = mapped_column(String(255), nullable=False)
    hypervisor_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    host_ip: Mapped[str | None] = mapped_column(String(39), nullable=True)
    cpu_info: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False)
    local_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    vcpus_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disk_available_least: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    disk_allocation_ratio: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    # Changes with every claim and release on this node (placement's resource-provider generation).
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # What the host keeps for itself, as its agent reports it (Nova's options of these names).
    reserved_host_cpus: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    reserved_host_memory_mb: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    reserved_host_disk_mb: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


class Allocation(Base):
    """What the scheduler claimed for one consumer (an instance) on one node (placement's allocations).

    During an evacuation the instance holds two: the source's, kept until the source host cleans up,
    and the destination's.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("consumer_uuid", "compute_node_id", name="uniq_allocations0consumer_uuid0compute_node_id"),
        Index("allocations_compute_node_id_idx", "compute_node_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer_uuid: Mapped[str] = mapped_column(String(36), nullable=False)
    compute_node_id: Mapped[int] = mapped_column(ForeignKey("compute_nodes.id"), nullable=False)
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class Flavor(Base):
    """A flavor (Nova keeps these in the API database and deletes them for real)."""

    __tablename__ = "flavors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavorid: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False)
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False)
    root_gb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    swap: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class FlavorExtraSpec(Base):
    __tablename__ = "flavor_extra_specs"
    __table_args__ = (UniqueConstraint("flavor_id", "key", name="uniq_flavor_extra_specs0flavor_id0key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavors.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    value: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class FlavorProject(Base):
    """Which projects may use a private flavor (os-flavor-access)."""

    __tablename__ = "flavor_projects"
    __table_args__ = (UniqueConstraint("flavor_id", "project_id", name="uniq_flavor_projects0flavor_id0project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavors.id", ondelete="CASCADE"), nullable=False)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
