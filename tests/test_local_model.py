"""The local model: a file is kept only when size and SHA-256 match (joining and installing are in
test_model_install.py). One marked test runs the real model through a real workflow when it is
installed (`aifactory model install`)."""

from __future__ import annotations

import json
import sys

import pytest

from workers import local_model
from workers.local_model import ModelInstallError, verify


def test_wrong_size_is_refused_without_hashing(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 10)
    with pytest.raises(ModelInstallError, match="is 10 bytes, the pinned model is 1,117,320,768: refused"):
        verify(path)


@pytest.mark.local_model
async def test_the_reference_agent_runs_on_the_real_local_model(client, db_url, tmp_path):
    if not local_model.installed():
        pytest.skip("the local model is not installed (aifactory model install)")
    from activities.model.endpoints import Endpoint
    from tests.support.harness import FactoryUnderTest, replay

    with local_model.LocalModelServer(local_model.model_path(), log=tmp_path / "model.log") as server:
        f = FactoryUnderTest(client, db_url, server.base_url, "tq-local-model")
        f.parts.endpoints.register(local_model.local_endpoint("default", server.base_url))
        async with f.worker():
            run = await f.start(
                {"ticket_text": "Excel crashes every time I open the quarterly forecast file.", "requester_email": "jonas.berg@example.com"}
            )
            result = await run.result()
            await replay(run.handle)
    print(result.model_dump_json(indent=1), file=sys.stderr)
    assert result.output["category"] in {"software", "hardware", "other"}
    assert [t.tool for t in result.tool_calls if t.outcome.value == "ok"][-1] == "create_ticket"
    assert result.usage.model_calls >= 2 and result.usage.cost_usd == 0.0
    print(json.dumps(result.output), file=sys.stderr)
