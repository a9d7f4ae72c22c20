#!/usr/bin/env python3
# Used for issue 15: `python3 scripts/import-cycles.py src` lists import cycles between module files.
"""File-level module graph of src/: an edge A -> B when file A names crate::...B...
(the longest prefix of the path that is a module file). Prints the cycles."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            parts = os.path.relpath(p, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"): parts = parts[:-1]
            files[tuple(parts)] = p
def resolve(path):
    parts = tuple(path.split("::"))
    for n in range(len(parts), 0, -1):
        if parts[:n] in files: return parts[:n]
    return None
def expand(prefix, body):
    # expand `a::{b, c::{d}}` groups into paths
    out = []; depth = 0; cur = ""
    items = []
    for ch in body:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0: items.append(cur); cur = ""
        else: cur += ch
    items.append(cur)
    for it in items:
        it = it.strip()
        if not it: continue
        m = re.match(r"([a-zA-Z_0-9:]*?)::\{(.*)\}$", it, re.S)
        if m: out += expand(prefix + "::" + m.group(1) if prefix else m.group(1), m.group(2))
        else: out.append((prefix + "::" + it) if prefix else it)
    return out
edges = {}
for mod, p in files.items():
    src = re.sub(r"//.*", "", open(p).read())
    # unit tests (a `mod tests` at the end of a file) are not the module's dependencies
    src = re.split(r"#\[cfg\(test\)\]\s*mod tests", src)[0]
    # re-exports (`pub use`) present a child's items; they are not dependencies
    src = re.sub(r"^\s*pub(\([a-z]+\))? use [^;]*;", "", src, flags=re.M)
    paths = []
    for m in re.finditer(r"crate::\{(.*?)\};", src, re.S): paths += expand("", m.group(1))
    for m in re.finditer(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)*)::\{(.*?)\};", src, re.S): paths += expand(m.group(1), m.group(2))
    for m in re.finditer(r"crate::((?:[a-z_0-9]+::)*[a-zA-Z_0-9]+)(?![\w:])", src): paths.append(m.group(1))
    for m in re.finditer(r"\bsuper::\{(.*?)\};", src, re.S):
        paths += expand("::".join(mod[:-1]), m.group(1)) if mod[:-1] else expand("", m.group(1))
    src = re.sub(r"\bsuper::super::", "SUPERSUPER::", src)
    for m in re.finditer(r"\bSUPERSUPER::((?:[a-z_0-9]+::)*[a-zA-Z_0-9]+)", src):
        paths.append("::".join(mod[:-2] + (m.group(1),)))
    for m in re.finditer(r"\bsuper::((?:[a-z_0-9]+::)*[a-zA-Z_0-9]+)", src):
        # super:: from a mod.rs file names the parent's parent; from a leaf file, the parent
        base = mod[:-1] if p.endswith("mod.rs") is False else mod[:-1]
        paths.append("::".join(base + (m.group(1),)) if base else m.group(1))
    if p.endswith(("mod.rs", "lib.rs", "main.rs")):
        for child in re.findall(r"^\s*(?:pub(?:\(crate\))? )?mod ([a-z_0-9]+);", src, re.M):
            if re.search(r"(?<![:a-z_0-9])" + child + r"::", src):
                paths.append("::".join(mod + (child,)))
    for q in paths:
        t = resolve(q.split(" as ")[0].strip())
        if t is None and q.split("::")[0] in ("Config",): t = ()
        if t is not None and t != mod:
            edges.setdefault(mod, set()).add(t)
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in sorted(files):
    if v not in idx: sc(v)
cyc = [s for s in sccs if len(s) > 1]
n = lambda x: "::".join(x) or "crate"
for s in cyc:
    print("cycle:", ", ".join(sorted(n(x) for x in s)))
    for a in sorted(s):
        for b in sorted(edges.get(a, ())):
            if b in s: print("   ", n(a), "->", n(b))
if not cyc: print(f"no import cycles between the {len(files)} module files of {root}/")
