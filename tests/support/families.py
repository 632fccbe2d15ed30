"""A throwaway tool family, written as an installed package: its source and its dist-info.

The family (`weather`, one read tool `forecast` with a table of forecasts) is what a company
would ship as its own distribution; the dist-info registers it in the `aifactory.tool_families`
entry-point group, so the factory finds it the way it finds any installed family.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "acme_weather_tools"
FAMILY_NAME = "weather"

DECLARATIONS = '''
"""Weather tools: workflow-safe declarations."""
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from contracts.catalog import declare
from contracts.tools import SideEffect, ToolMeta


class ForecastArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(min_length=2, description="City to forecast.")


class Forecast(BaseModel):
    city: str
    summary: str


FORECAST = declare(
    ToolMeta(name="forecast", description="Tomorrow's weather for a city.", side_effect=SideEffect.READ,
             start_to_close=timedelta(seconds=10)),
    ForecastArgs,
    Forecast,
    family="weather",
)
'''

ACTIVITIES = '''
"""Weather tools: the activity and its table (not workflow-safe)."""
import asyncio

from sqlmodel import Field, Session, SQLModel
from temporalio import activity

from activities.db import engine_for
from contracts.tools import ToolContext
from acme_weather_tools.declarations import FORECAST, Forecast, ForecastArgs


class WeatherReport(SQLModel, table=True):
    __tablename__ = "acme_weather_report"
    __table_args__ = {"extend_existing": True}
    city: str = Field(primary_key=True)
    summary: str


def build(db_url):
    def lookup(city):
        with Session(engine_for(db_url)) as s:
            row = s.get(WeatherReport, city)
        return Forecast(city=city, summary=row.summary if row else "no forecast")

    @activity.defn(name=FORECAST.activity_name)
    async def forecast(ctx: ToolContext, args: ForecastArgs) -> Forecast:
        return await asyncio.to_thread(lookup, args.city)

    return [forecast]


def seed(db_url, rows):
    with Session(engine_for(db_url)) as s:
        for row in rows:
            s.merge(WeatherReport(**row))
        s.commit()
'''

INIT = '''
from activities.tools.families import ToolFamily
from acme_weather_tools import declarations
from acme_weather_tools.activities import WeatherReport, build, seed

FAMILY = ToolFamily(name="weather", declarations=declarations, activities=build, tables=[WeatherReport], seed=seed)
'''


def write_family(root: Path, entry_points: str | None = None) -> None:
    """Write the package and its dist-info under `root` (which the caller puts on `sys.path`)."""
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(INIT)
    (package / "declarations.py").write_text(DECLARATIONS)
    (package / "activities.py").write_text(ACTIVITIES)
    dist = root / "acme_weather_tools-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-weather-tools\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        entry_points or f"[aifactory.tool_families]\n{FAMILY_NAME} = {PACKAGE}:FAMILY\n"
    )


def forget_family() -> None:
    """Take the throwaway family out of this test process: its tools, modules and table."""
    from sqlmodel import SQLModel

    from contracts.catalog import CATALOG

    for name in [n for n, d in CATALOG.items() if d.family == FAMILY_NAME]:
        del CATALOG[name]
    for module in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[module]
    table = SQLModel.metadata.tables.get("acme_weather_report")
    if table is not None:
        SQLModel.metadata.remove(table)
