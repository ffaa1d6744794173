"""The import contracts of `make lint` (pyproject.toml, docs/architecture.md), run for real.

Each breaking case copies src/bulkwatch to a temporary folder, adds one import to the copy, and
runs the real `lint-imports` on it in a subprocess, with this repository's pyproject.toml and its
contracts: the copy comes first on PYTHONPATH, so it is the package that gets analysed. Each case
runs one contract (`--contract`), so its exit status is that contract's alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Contract ids and names, as in pyproject.toml.
LAYERS, LAYERS_NAME = "layers", "bulkwatch layers"
NO_CYCLES, NO_CYCLES_NAME = "no-cycles", "No import cycles between modules"


def lint_imports(src: Path, contract: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports --contract CONTRACT` on the `bulkwatch` package found in `src`."""
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "FORCE_COLOR"}}
    env |= {"PYTHONPATH": str(src), "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--contract", contract, "pyproject.toml"],
        cwd=REPO,  # for pyproject.toml and the contract type in scripts/
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "src" / "bulkwatch",
        src / "bulkwatch",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return src


def append(src: Path, module: str, code: str) -> int:
    """Append `code` to the module's file; the line number of its last line."""
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    text = path.read_text() + "\n\n" + code.strip() + "\n"
    path.write_text(text)
    return len(text.splitlines())


def report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize(
    ("module", "code", "imported", "broken"),
    [
        pytest.param(
            "bulkwatch.model.times",
            "import bulkwatch.daemon",
            "bulkwatch.daemon",
            "bulkwatch.model is not allowed to import bulkwatch.daemon:",
            id="module-level",
        ),
        pytest.param(
            "bulkwatch.telemetry.metrics",
            "def _late() -> None:\n    import bulkwatch.store.base",
            "bulkwatch.store.base",
            "bulkwatch.telemetry is not allowed to import bulkwatch.store:",
            id="function-local",
        ),
        pytest.param(
            "bulkwatch.store.base",
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import bulkwatch.sources",
            "bulkwatch.sources",
            "bulkwatch.store is not allowed to import bulkwatch.sources:",
            id="type-checking",
        ),
        pytest.param(
            "bulkwatch.daemon.health",
            "import bulkwatch.simulator.core",
            "bulkwatch.simulator.core",
            "bulkwatch.daemon is not allowed to import bulkwatch.simulator:",
            id="sibling",
        ),
    ],
)
def test_an_import_against_the_layers_breaks_the_layers_contract(
    tmp_path: Path, module: str, code: str, imported: str, broken: str
) -> None:
    src = copy_package(tmp_path)
    line = append(src, module, code)

    proc = lint_imports(src, LAYERS)

    assert proc.returncode == 1, report(proc)
    lines = proc.stdout.splitlines()
    assert f"{LAYERS_NAME} BROKEN" in lines, report(proc)
    assert broken in lines, report(proc)
    assert f"- {module} -> {imported} (l.{line})" in lines, report(proc)


def test_a_function_local_import_that_closes_a_cycle_is_named(tmp_path: Path) -> None:
    src = copy_package(tmp_path)
    # store.py imports schema at module level; schema now imports store back, inside a function.
    append(
        src,
        "bulkwatch.store.sqlite.schema",
        "def _late() -> None:\n    import bulkwatch.store.sqlite.store",
    )
    cycle = (
        "bulkwatch.store.sqlite.schema -> bulkwatch.store.sqlite.store"
        " -> bulkwatch.store.sqlite.schema"
    )

    proc = lint_imports(src, NO_CYCLES)

    assert proc.returncode == 1, report(proc)
    lines = proc.stdout.splitlines()
    assert f"{NO_CYCLES_NAME} BROKEN" in lines, report(proc)
    assert cycle in lines, report(proc)  # on one line, wider than the 80 columns of the report
    # The layers contract does not see a cycle inside one layer: that is why no-cycles exists.
    assert lint_imports(src, LAYERS).returncode == 0


@pytest.mark.parametrize("contract", [LAYERS, NO_CYCLES])
def test_the_package_keeps_the_contract(contract: str) -> None:
    proc = lint_imports(REPO / "src", contract)

    assert proc.returncode == 0, report(proc)
    assert "BROKEN" not in proc.stdout, report(proc)
