#!/usr/bin/env python3
"""The module graph of the worker crate, from its `crate::` paths; fails on an import cycle.

Usage: python3 scripts/module-graph.py [--dot] [SRC_DIR]   (default: src)

A node is a top-level module of the crate (`pub mod x;` in lib.rs), `lib` for lib.rs itself, a
crate re-exported under a name (`pub use makeit3d_core as core;`: a leaf),
and an edge `a -> b` means some file of module `a` names `crate::b` (in a `use` or inline,
`crate::{b, …}` groups included; comments and string literals are skipped). A file of `src/x/…`
belongs to module `x`. Directories that are crates of their own (with a Cargo.toml, such as
src/core/) are skipped: the compiler already keeps their dependencies one way. Exits 1 when two
modules reach each other (a strongly connected component with more than one module).
"""
import os
import re
import sys


def strip(text):
    """The text without comments, string and char literals (each replaced by a space)."""
    text = re.sub(r'r(#+)"(?:.|\n)*?"\1', ' ', text)
    text = re.sub(r"'(?:\\.|\\u\{[0-9a-fA-F]+\}|[^\\'\n])'", ' ', text)
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            i = n if j < 0 else j + 2
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == '\\' else 1
            i += 1
            out.append(' ')
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def group_heads(body):
    """The first path segment of every item of a `{…}` use group (nested groups skipped)."""
    heads, depth, item = [], 0, ''
    for c in body + ',':
        if c == '{':
            depth += 1
        elif c == '}':
            depth -= 1
        elif c == ',' and depth == 0:
            name = item.strip().split('::')[0].strip()
            if re.fullmatch(r'\w+', name):
                heads.append(name)
            item = ''
            continue
        if depth == 0:
            item += c
    return heads


def references(code):
    refs = set(re.findall(r'\bcrate\s*::\s*(\w+)', code))
    for m in re.finditer(r'\bcrate\s*::\s*\{', code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {'{': 1, '}': -1}.get(code[j], 0)
            j += 1
        refs.update(group_heads(code[m.end():j - 1]))
    return refs


def graph(src):
    lib = strip(open(os.path.join(src, 'lib.rs'), encoding='utf-8').read())
    modules = set(re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', lib, re.M))
    # Crates re-exported under a module-like name (`pub use makeit3d_core as core;`): leaves.
    crates = set(re.findall(r'^\s*pub\s+use\s+\w+\s+as\s+(\w+)\s*;', lib, re.M))
    edges = {m: set() for m in modules | crates | {'lib'}}
    modules |= crates
    # lib.rs names its modules without `crate::`.
    edges['lib'] = {m for m in re.findall(r'\b(\w+)\s*::', lib) if m in modules}
    edges['lib'] |= references(lib) & modules
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs
                         if not os.path.exists(os.path.join(root, d, 'Cargo.toml')))
        for f in sorted(files):
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(root, f), src).split(os.sep)
            if rel == ['lib.rs']:
                continue
            module = rel[0][:-3] if len(rel) == 1 else rel[0]
            if module not in modules or module in crates:
                continue
            code = strip(open(os.path.join(root, f), encoding='utf-8').read())
            edges[module] |= {r for r in references(code) if r in modules and r != module}
    return edges


def components(edges):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layers(edges):
    """Each module's depth: 0 for a module that names no other, else 1 + its deepest target."""
    depth = {}

    def d(v, seen=()):
        if v not in depth:
            depth[v] = 0 if v in seen else 1 + max((d(w, seen + (v,)) for w in edges[v]), default=-1)
        return depth[v]

    for v in edges:
        d(v)
    return depth


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    src = args[0] if args else 'src'
    edges = graph(src)
    if '--dot' in sys.argv:
        print('digraph modules {')
        for v in sorted(edges):
            for w in sorted(edges[v]):
                print(f'  "{v}" -> "{w}";')
        print('}')
        return 0
    depth = layers(edges)
    for v in sorted(edges, key=lambda v: (-depth[v], v)):
        targets = ', '.join(sorted(edges[v])) or '—'
        print(f'{v:<12} → {targets}')
    cycles = [c for c in components(edges) if len(c) > 1]
    if cycles:
        for c in cycles:
            print('module cycle: ' + ' ↔ '.join(c), file=sys.stderr)
        return 1
    print(f'module graph: {len(edges)} modules, '
          f'{sum(len(e) for e in edges.values())} edges, no cycle')
    return 0


if __name__ == '__main__':
    sys.exit(main())
