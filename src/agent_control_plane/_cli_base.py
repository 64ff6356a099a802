"""What every `acp` command shares: the control plane of the invocation and the output helpers."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent_control_plane.facade import ControlPlaneFacade

NO_LIMIT = "∞"
PIPED_WIDTH = 200


@dataclass
class Settings:
    database_url: str
    table_prefix: str
    schema: str | None
    plane: ControlPlaneFacade | None = None


def get_plane(ctx: typer.Context, *, creates: bool = False) -> ControlPlaneFacade:
    """The control plane for this invocation, built on first use and closed when the command ends.

    Only a command that `creates` the database (`acp db upgrade`) may open a SQLite file that does not exist yet:
    any other would create an empty file at a mistyped path, then fail on its missing tables.
    """
    settings = ctx.find_object(Settings)
    assert settings is not None, "the root callback sets it"
    if settings.plane is None:
        try:
            plane = ControlPlaneFacade.from_database_url(
                settings.database_url, table_prefix=settings.table_prefix, schema=settings.schema
            )
        except ValueError as exc:  # an invalid --table-prefix or --schema
            raise typer.BadParameter(str(exc)) from None
        missing = None if creates else missing_sqlite_file(settings.database_url)
        if missing is not None:
            plane.close()
            fail(
                f"there is no SQLite database at {missing} (from --database-url or ACP_DATABASE_URL: "
                f"{settings.database_url}); check the path, or create it with `acp db upgrade`"
            )
        settings.plane = ctx.find_root().with_resource(plane)
    return settings.plane


def missing_sqlite_file(database_url: str) -> Path | None:
    """The file a SQLite URL names when it does not exist (None for other databases, in-memory ones, or a URL
    SQLAlchemy cannot parse, which opening it reports)."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    path = Path(url.database)
    return None if path.exists() else path.resolve()


# output -----------------------------------------------------------------------------------------------------
def get_console() -> Console:
    # Built per use, so output goes to the sys.stdout of the moment (which tests replace).
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into grep or a file: Rich's 80-column guess would wrap every table row.
        console.width = PIPED_WIDTH
    return console


def fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def format_amount(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_limit(value: Decimal | int | None) -> str:
    if value is None:
        return NO_LIMIT
    return format_amount(value) if isinstance(value, Decimal) else str(value)


def format_when(value: datetime, *, precise: bool = False) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else value.strftime("%Y-%m-%d %H:%M:%S")


def json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format_amount(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: object) -> str:
    return json.dumps(value, default=json_default, ensure_ascii=False)


def echo_json(value: object) -> None:
    typer.echo(json_text(value))


def make_table(*columns: str) -> Table:
    table = Table(header_style="bold")
    for column in columns:
        # Ids are what users copy into the next command: never wrap them; fold, never cut, everything else.
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    return table


def add_row(table: Table, *cells: str | None) -> None:
    # Text, not markup: names, reasons and payloads come from users and agents.
    table.add_row(*(Text("" if cell is None else cell) for cell in cells))


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """`30s`, `30m`, `2h`, `7d`, `1w` as a timedelta; None when `text` is not written that way."""
    match = _DURATION.match(text)
    return None if match is None else timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def detail_table(fields: list[tuple[str, str]]) -> Table:
    """One record as name / value lines (`sessions show`, `tickets show`)."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields:
        add_row(table, name, value)
    return table
