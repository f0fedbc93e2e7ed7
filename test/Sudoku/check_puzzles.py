#!/usr/bin/env python3
"""Independent check of optim-sudoku's generator: every puzzle of a dump
(lines "PUZZLE SOLUTION", 16 digits each, 0 = blank) has exactly one
completion among all 288 valid 4x4 grids (enumerated here from
permutations, not by the generator's backtracker), that completion is the
dumped solution, and the puzzles are distinct."""

import itertools
import sys


def valid(grid):
    rows = [grid[4 * r:4 * r + 4] for r in range(4)]
    cols = [grid[c::4] for c in range(4)]
    boxes = [[grid[(br + i // 2) * 4 + bc + i % 2] for i in range(4)]
             for br in (0, 2) for bc in (0, 2)]
    return all(sorted(u) == [1, 2, 3, 4] for u in rows + cols + boxes)


def all_grids():
    perms = list(itertools.permutations([1, 2, 3, 4]))
    grids = []
    for rows in itertools.product(perms, repeat=4):
        g = [d for r in rows for d in r]
        if valid(g):
            grids.append(g)
    return grids


def main():
    grids = all_grids()
    assert len(grids) == 288, len(grids)
    seen = set()
    count = 0
    for line in open(sys.argv[1]):
        puzzle, solution = line.split()
        p = [int(c) for c in puzzle]
        s = [int(c) for c in solution]
        matches = [g for g in grids
                   if all(pc == 0 or pc == gc for pc, gc in zip(p, g))]
        if len(matches) != 1:
            sys.exit(f"puzzle {puzzle}: {len(matches)} solutions")
        if matches[0] != s:
            sys.exit(f"puzzle {puzzle}: dumped solution {solution} is wrong")
        if puzzle in seen:
            sys.exit(f"puzzle {puzzle} appears twice")
        seen.add(puzzle)
        count += 1
    clues = [sum(c != "0" for c in p) for p in seen]
    print(f"{count} puzzles, each with a unique solution; clues "
          f"{min(clues)}..{max(clues)}")


if __name__ == "__main__":
    main()
