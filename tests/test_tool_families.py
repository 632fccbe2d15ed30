"""Tool families are plug-ins: a family installed as its own package, found through the
`aifactory.tool_families` entry-point group, runs end to end under its namespaced activity name."""

from __future__ import annotations

import json

import pytest

from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.families import installed_families
from contracts.catalog import CATALOG
from contracts.tools import ToolOutcome
from tests.support.families import FAMILY_NAME, PACKAGE, forget_family, write_family
from tests.support.harness import factory_with, replay, write_policy
from workers.worker import WorkerParts, passthrough_modules

QUESTION = {"ticket_text": "Will it rain in Lisbon tomorrow?", "requester_email": "ana.silva@example.com"}
FINAL = {"category": "other", "priority": "P4", "ticket_id": None, "summary": "Forecast for Lisbon given"}
# Each test installs the family afresh, so its table class is declared again in the same process.
pytestmark = pytest.mark.filterwarnings("ignore:This declarative base already contains a class:sqlalchemy.exc.SAWarning")

ALLOW_FORECASTS = [{"id": "forecasts", "match": {"tools": ["forecast"]}, "decision": "allow", "reason": "read-only"}]


@pytest.fixture
def weather_family(tmp_path, monkeypatch):
    """The throwaway `weather` family, installed for this test only."""
    write_family(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield {f.name: f for f in installed_families()}[FAMILY_NAME]
    forget_family()


def scheduled_activities(history) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def test_built_in_families_are_found_without_package_metadata():
    # The editable install's metadata may predate a family: the packages under activities/tools/ count anyway.
    families = {f.name: f for f in installed_families()}
    assert "it_desk" in families
    assert {t.name: t.activity_name for t in families["it_desk"].tools} == {
        "lookup_requester": "lookup_requester",  # shipped names, as recorded histories schedule them
        "create_ticket": "create_ticket",
    }


def test_an_installed_family_declares_namespaced_tools_and_joins_the_sandbox_list(tmp_path, weather_family):
    forecast = CATALOG["forecast"]
    assert (forecast.family, forecast.name, forecast.activity_name) == ("weather", "forecast", "tool.weather.forecast")
    assert forecast.schema_for_model().name == "forecast"  # the model keeps the short name
    assert f"{PACKAGE}.declarations" in passthrough_modules()
    names = [a.__temporal_activity_definition.name for a in WorkerParts(db_url=f"sqlite:///{tmp_path / 'w.db'}").tool_activities()]
    assert "tool.weather.forecast" in names and "create_ticket" in names


def test_a_family_registered_twice_under_one_name_is_refused(tmp_path, monkeypatch):
    # The same object under two entry points is one family; two different objects under one name are not.
    write_family(tmp_path / "site", entry_points=f"[aifactory.tool_families]\nit_desk = {PACKAGE}:FAMILY\nalso = activities.tools.it_desk:FAMILY\n")
    (tmp_path / "site" / PACKAGE / "__init__.py").write_text(
        "from activities.tools.families import ToolFamily\nfrom acme_weather_tools import declarations\n"
        "FAMILY = ToolFamily(name='it_desk', declarations=declarations, activities=lambda db_url: [])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        with pytest.raises(ValueError, match="two tool families are named 'it_desk'"):
            installed_families()
    finally:
        forget_family()


async def test_an_installed_family_runs_end_to_end_under_its_namespaced_name(client, db_url, tmp_path, weather_family):
    policy_root = write_policy(tmp_path / "pol", "weather", ALLOW_FORECASTS, [("it-desk-leads", "PT15M")])
    model = ScriptedModel(Turns([Reply.tool("forecast", {"city": "Lisbon"}), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model, policy_root=policy_root) as f:
        # The worker created the family's table in this store when it built the family's activities.
        weather_family.seed(db_url, [{"city": "Lisbon", "summary": "light rain, 17 C"}])
        run = await f.start(QUESTION, tools=["forecast"], required_tools=["forecast"], policy="weather")
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    [call] = result.tool_calls
    assert (call.tool, call.outcome) == ("forecast", ToolOutcome.OK)
    assert "tool.weather.forecast" in scheduled_activities(history)
    assert [t["function"]["name"] for t in model.requests[0].body["tools"]] == ["forecast"]
    tool_messages = [m for m in model.requests[1].body["messages"] if m["role"] == "tool"]
    assert json.loads(tool_messages[-1]["content"]) == {"city": "Lisbon", "summary": "light rain, 17 C"}


FORECAST_ANSWER = {
    "type": "object", "required": ["city", "summary"], "additionalProperties": False,
    "properties": {"city": {"type": "string"}, "summary": {"type": "string"}},
}  # fmt: skip


async def test_an_answer_tool_result_is_the_answer_and_the_model_writes_none(client, db_url, tmp_path, weather_family):
    policy_root = write_policy(tmp_path / "pol", "weather", ALLOW_FORECASTS, [("it-desk-leads", "PT15M")])
    model = ScriptedModel(Turns([Reply.tool("forecast", {"city": "Lisbon"})]))  # no answer scripted: none is asked for
    async with factory_with(client, db_url, model, policy_root=policy_root) as f:
        weather_family.seed(db_url, [{"city": "Lisbon", "summary": "light rain, 17 C"}])
        run = await f.start(
            QUESTION, tools=["forecast"], required_tools=["forecast"], answer_tool="forecast", output_schema=FORECAST_ANSWER, policy="weather",
        )  # fmt: skip
        result = await run.result()
        await replay(run.handle)
    assert result.output == {"city": "Lisbon", "summary": "light rain, 17 C"}
    assert len(model.requests) == 1 and result.steps == 1


async def test_an_answer_tool_result_that_is_not_a_valid_answer_leaves_the_answer_to_the_model(client, db_url, tmp_path, weather_family):
    policy_root = write_policy(tmp_path / "pol", "weather", ALLOW_FORECASTS, [("it-desk-leads", "PT15M")])
    model = ScriptedModel(Turns([Reply.tool("forecast", {"city": "Lisbon"}), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model, policy_root=policy_root) as f:
        weather_family.seed(db_url, [{"city": "Lisbon", "summary": "light rain, 17 C"}])
        run = await f.start(QUESTION, tools=["forecast"], required_tools=["forecast"], answer_tool="forecast", policy="weather")
        result = await run.result()  # the triage schema: a forecast is not a valid answer to it
        await replay(run.handle)
    assert result.output == FINAL and len(model.requests) == 2
