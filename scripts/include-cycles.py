#!/usr/bin/python3
"""Layers point down: fails when modules of src/ include one another in a cycle.

A module is a .c file and its .h; module A depends on B when A.c or A.h
includes "B.h". Prints every strongly connected group of more than one module
(each is a cycle) and exits 1 if there is any."""
import pathlib
import re
import sys

SRC = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                   pathlib.Path(__file__).resolve().parents[1] / "src")
INCLUDE = re.compile(r'^#include "([a-z0-9_]+)\.h"', re.M)


def graph():
    deps = {}
    for f in SRC.glob("*.[ch]"):
        mod = f.stem
        deps.setdefault(mod, set()).update(
            d for d in INCLUDE.findall(f.read_text()) if d != mod)
    return deps


def cycles(deps):
    """Tarjan's strongly connected components, groups of two or more."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def main():
    found = cycles(graph())
    for group in found:
        print("include cycle among: " + " ".join(group))
    if not found:
        print("include-cycles: none in src/")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
