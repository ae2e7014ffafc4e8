#!/usr/bin/env python3
"""No module cycles inside a crate (`make test` runs it).

For each crate under crates/, the modules are the crate root's children
(`foo.rs` with everything under `foo/` is module `foo`): a submodule belongs
to its parent, so `a` using `b::c` while `b` uses `a` is a cycle. An edge
A -> B is a `crate::B...` path (or a `super::` path resolving to B) in the
non-test code of any file of A: everything from the first `#[cfg(test)]`
of a file on is left out, since tests may reach anywhere. Any cycle among
the modules of a crate fails the check, with the modules named.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(src: pathlib.Path, f: pathlib.Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts[:1])


def check_crate(crate: pathlib.Path) -> list:
    src = crate / "src"
    if not src.is_dir():
        return []
    files = [(module_of(src, f), f) for f in sorted(src.rglob("*.rs"))]
    mods = {m for m, _ in files if m}
    edges = {m: set() for m in mods}
    for m, f in files:
        if not m:
            continue
        sub = tuple(f.relative_to(src).with_suffix("").parts)
        text = f.read_text()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        # Comments are not imports.
        text = re.sub(r"//[^\n]*", "", text)
        for kind, rest in PATH.findall(text):
            segs = rest.split("::")[1:]
            if kind == "crate":
                target = tuple(segs[:1])
            else:
                # `super` from `a/b.rs` is `a`; from `a.rs` the crate root.
                parent = sub[:-1]
                target = (parent + tuple(segs))[:1]
            if target in mods and target != m:
                edges[m].add(target)
    # Tarjan's strongly connected components.
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted("::".join(c) for c in comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return out


bad = 0
for crate in sorted((root / "crates").iterdir()):
    cycles = check_crate(crate)
    for c in cycles:
        bad += 1
        print(f"check-modules: cycle in {crate.name}: " + " <-> ".join(c), file=sys.stderr)
    if not cycles:
        print(f"check-modules: {crate.name}: no module cycle")
sys.exit(1 if bad else 0)
