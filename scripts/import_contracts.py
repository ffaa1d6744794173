"""Import-linter contract types of our own, registered in pyproject.toml (`contract_types`).

`acyclic_modules`: no import cycle between any two modules of the listed packages, whatever
package each module is in. A `layers` contract only looks at imports *between* its layers, so a
cycle inside one layer (`registry` <-> a notifier in the same package) passes it; this contract
catches those. It reads the same graph as every other contract, so function-local imports and
`if TYPE_CHECKING:` imports count like any other (unless `exclude_type_checking_imports` is set).

The report prints one cycle a line, each module in import order and the first one repeated at
the end: `a -> b -> a` means `a` imports `b` and `b` imports `a`. Every import that lies on a
cycle appears in at least one line, in the shortest cycle through it; a longer cycle made only
of imports already shown is left out. Run with `lint-imports --contract no-cycles`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Set
from typing import cast

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.imports import Module

Cycle = tuple[str, ...]
Edge = tuple[str, str]


class AcyclicModulesContract(Contract):
    """Fails when any module of `packages` reaches itself through its imports."""

    type_name = "acyclic_modules"

    packages = fields.SetField(subfield=fields.ModuleField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        scope: set[str] = set()
        for package in cast(Set[Module], self.packages):
            scope.add(package.name)
            scope |= graph.find_descendants(package.name)
        imports = {
            module: sorted(graph.find_modules_directly_imported_by(module) & scope)
            for module in scope
        }
        cycles = find_cycles(imports)
        output.verbose_print(verbose, f"{len(cycles)} import cycles among {len(scope)} modules.")
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        cycles: list[Cycle] = check.metadata["cycles"]
        for cycle in cycles:
            # One line a cycle, never wrapped to the terminal's width, names taken literally.
            output.console.print(format_cycle(cycle), soft_wrap=True, markup=False)
        output.new_line()
        noun = "cycle" if len(cycles) == 1 else "cycles"
        output.print_error(f"{len(cycles)} import {noun}.", bold=False)


def format_cycle(cycle: Cycle) -> str:
    return " -> ".join((*cycle, cycle[0]))


def find_cycles(imports: dict[str, list[str]]) -> list[Cycle]:
    """Shortest cycles covering every import that lies on a cycle, shortest first.

    `imports` maps each module to the modules it imports directly. A cycle is given by its
    modules in import order, starting from the alphabetically first one; the answer is the same
    from run to run.
    """
    candidates: set[Cycle] = set()
    for importer in sorted(imports):
        for imported in imports[importer]:
            back = _shortest_chain(imports, imported, importer)
            if back is not None:
                candidates.add(_rotated((importer, *back[:-1])))
    chosen: list[Cycle] = []
    covered: set[Edge] = set()
    for cycle in sorted(candidates, key=lambda c: (len(c), c)):
        edges = set(_edges(cycle))
        if not edges <= covered:
            chosen.append(cycle)
            covered |= edges
    return chosen


def _shortest_chain(imports: dict[str, list[str]], start: str, end: str) -> list[str] | None:
    """Breadth-first, neighbours in name order: the same chain every run."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        if module == end:
            chain = [module]
            while (previous := came_from[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for imported in imports.get(module, ()):
            if imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    return None


def _rotated(cycle: Cycle) -> Cycle:
    first = cycle.index(min(cycle))
    return cycle[first:] + cycle[:first]


def _edges(cycle: Cycle) -> Iterable[Edge]:
    return zip(cycle, cycle[1:] + cycle[:1], strict=True)
