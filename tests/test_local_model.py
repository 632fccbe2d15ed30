"""The local model: joined from its parts and kept only when size and SHA-256 match; a tampered
file is refused and removed. One marked test runs the real model through a real workflow when
it is installed (`aifactory model install`)."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from workers import local_model
from workers.local_model import ModelInstallError, join_parts, verify


def fake_parts(tmp_path, monkeypatch, chunks: list[bytes]) -> str:
    """Packages `<prefix>1..n` exposing `get_part_path()`, like the published parts; returns the name template."""
    prefix = f"fakepart_{tmp_path.name.replace('-', '_')}_"
    for i, chunk in enumerate(chunks, 1):
        pkg = tmp_path / "pkgs" / f"{prefix}{i}"
        pkg.mkdir(parents=True)
        (pkg / "part.bin").write_bytes(chunk)
        (pkg / "__init__.py").write_text("from pathlib import Path\ndef get_part_path():\n    return str(Path(__file__).parent / 'part.bin')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return prefix + "{}"


def test_parts_join_in_order_and_verify(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(200)), b"second" * 50, b"tail"]
    module = fake_parts(tmp_path, monkeypatch, chunks)
    whole = b"".join(chunks)
    target = tmp_path / "cache" / "model.gguf"
    join_parts(target, lambda m: None, parts=3, module=module, size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    assert target.read_bytes() == whole
    assert not target.with_suffix(".partial").exists()


def test_a_join_that_does_not_verify_is_refused_and_removed(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(100), b"altered"]
    module = fake_parts(tmp_path, monkeypatch, chunks)
    target = tmp_path / "cache" / "model.gguf"
    expected = hashlib.sha256(b"GGUF" + bytes(100) + b"original").hexdigest()
    with pytest.raises(ModelInstallError, match="SHA-256 .* the pinned model has .*: refused"):
        join_parts(target, lambda m: None, parts=2, module=module, size=len(b"".join(chunks)), sha256=expected)
    assert not target.exists() and not target.with_suffix(".partial").exists()


def test_wrong_size_is_refused_without_hashing(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 10)
    with pytest.raises(ModelInstallError, match="is 10 bytes, the pinned model is 1,117,320,768: refused"):
        verify(path)


def test_a_tampered_model_file_in_the_cache_is_refused_and_removed(tmp_path, monkeypatch):
    """Right size, wrong bytes (a sparse file of the pinned size): install refuses it and deletes it."""
    monkeypatch.setenv("AIFACTORY_MODEL_CACHE", str(tmp_path))
    path = local_model.model_path()
    with path.open("wb") as f:
        f.truncate(local_model.MODEL_SIZE)
    with pytest.raises(ModelInstallError, match="refused; removed it, run `aifactory model install`"):
        local_model.install(lambda m: None)
    assert not path.exists()


@pytest.mark.local_model
async def test_the_reference_agent_runs_on_the_real_local_model(client, db_url, tmp_path):
    if not local_model.installed():
        pytest.skip("the local model is not installed (aifactory model install)")
    from activities.model.endpoints import Endpoint
    from aifactory.demo import DEMO_APPROVER
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
