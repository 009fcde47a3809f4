"""What a client command prints: tables as novaclient draws them (prettytable, left-aligned, "-" for
null), or with ``-f json`` the records as the server sent them.

A command returns a ``Shown`` (rows of records under columns), a ``Details`` (one record as
novaclient's Property | Value table) or None (nothing more to print).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO


class UsageError(Exception):
    """Arguments argparse accepts but that do not fit together (exit status 2, like argparse's own)."""


Cell = Callable[[dict], object]


@dataclass
class Shown:
    """A table of ``columns``, or in JSON the records as the server sent them.

    A column's cell is ``cells[column](record)`` when given, else the record's key spelled like the
    column in lower case with underscores (novaclient's print_list rule).
    """

    columns: list[str]
    records: list[dict]
    one: bool = True  # a single record: a JSON object rather than an array
    cells: Mapping[str, Cell] = field(default_factory=dict)
    sort_by: str | None = None
    exit_code: int = 0


@dataclass
class Details:
    """One record as a Property | Value table sorted by property (novaclient's print_dict)."""

    record: dict
    properties: dict[str, object]
    exit_code: int = 0


Output = Shown | Details | None


def key_of(column: str) -> str:
    return column.lower().replace(" ", "_")


def text_of(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).replace("\r", "")


def _table(columns: list[str]):
    import prettytable

    table = prettytable.PrettyTable(columns)
    table.align = "l"
    return table


def render(output: Output, fmt: str) -> str | None:
    if output is None:
        return None
    if isinstance(output, Details):
        if fmt == "json":
            return json.dumps(output.record, indent=2)
        table = _table(["Property", "Value"])
        for name, value in sorted(output.properties.items()):
            table.add_row([name, text_of(value)])
        return table.get_string()
    if fmt == "json":
        return json.dumps(output.records[0] if output.one else output.records, indent=2)
    table = _table(output.columns)
    for record in output.records:
        table.add_row([text_of(output.cells[column](record) if column in output.cells
                               else record.get(key_of(column))) for column in output.columns])
    return table.get_string(sortby=output.sort_by) if output.sort_by else table.get_string()


class Progress:
    """A long command's progress: lines that stay, and on a terminal one status line redrawn in place.

    Off a terminal (a log, a pipe) the status line is never drawn: the lines alone tell the story.
    Safe to call from several threads.
    """

    CLEAR = "\r\033[K"

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self._status = ""
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            if self._status:
                self.stream.write(self.CLEAR)
            self.stream.write(text + "\n")
            if self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def status(self, text: str) -> None:
        if not self.tty:
            return
        with self._lock:
            self._status = text
            self.stream.write(self.CLEAR + text)
            self.stream.flush()

    def done(self) -> None:
        with self._lock:
            if self._status:
                self.stream.write(self.CLEAR)
                self.stream.flush()
            self._status = ""
