"""The shape of the code, checked: the rules DESIGN and the README's code map state, so that a
change that breaks one fails here instead of slowly eroding the layout.

- the root is the composition root: at most six modules;
- no import cycle between modules at import time (imports at module level);
- no module imports a name beginning with `_` from another module, nor touches another
  object's `_private` attributes;
- broker behaviour reads and waits on time only through clock.py;
- wire/ and log/ import no trio (sans-IO: bytes and files in, values out);
- dependencies point down: wire/ and log/ import nothing above them.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Code that is not the broker: tests, tools and the benchmark may read the system clock.
NOT_BROKER = ("tests", "compat_tests", "bench", "cli", "build", "node_modules")


def package_modules() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the trioka package."""
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "compat_tests", "bench", "build") or \
                any(p.startswith(".") or p == "node_modules" for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["trioka", *parts])] = path
    return out


MODULES = package_modules()


def module_level_imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(module, names) of the imports executed when the module is imported: those at module
    level, including inside module-level if/try blocks, not those inside functions."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                out.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    return out


def all_imports(path: pathlib.Path) -> list[tuple[str, list[str], int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
    return out


def resolve(name: str, imported: list[str]) -> list[str]:
    """The trioka modules an import statement loads (a package's submodules named in a
    `from package import module` included)."""
    targets = []
    if name in MODULES:
        targets.append(name)
    for n in imported:
        if f"{name}.{n}" in MODULES:
            targets.append(f"{name}.{n}")
    return targets


def test_the_root_holds_at_most_six_modules():
    root_modules = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root_modules) <= 6, root_modules


def test_no_import_cycle_at_import_time():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, names in module_level_imports(path):
            for target in resolve(name, names):
                if target != module:
                    graph[module].add(target)
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = name.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in graph and parent != module:
                    graph[module].add(parent)
    # A package's __init__ importing its own submodule is no cycle of concern; a submodule
    # importing its package's __init__ is how packages work. Drop package -> own child edges.
    for module in graph:
        graph[module] = {t for t in graph[module]
                         if not (t.startswith(module + ".") or module.startswith(t + "."))}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for module, path in MODULES.items():
        for name, names, line in all_imports(path):
            if name.startswith("trioka"):
                offenders += [f"{path.relative_to(ROOT)}:{line} {name}.{n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert not offenders, offenders


def time_calls(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in (("time", "time"), ("time", "monotonic"),
                                              ("time", "time_ns"), ("time", "monotonic_ns"),
                                              ("trio", "sleep"), ("trio", "sleep_until"),
                                              ("trio", "current_time")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                             f"{node.value.id}.{node.attr}")
    return found


def test_broker_behaviour_reads_time_only_through_the_clock():
    offenders = []
    for module, path in MODULES.items():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in NOT_BROKER or rel.name == "clock.py" or rel.parts[0] == "testing":
            continue
        offenders += time_calls(path)
    assert not offenders, offenders


def test_wire_and_log_are_sans_io_and_point_down():
    offenders = []
    for module, path in MODULES.items():
        layer = module.split(".")[1] if module.count(".") else ""
        if layer not in ("wire", "log"):
            continue
        allowed = ("trioka.wire",) if layer == "wire" else ("trioka.wire", "trioka.log")
        for name, _, line in all_imports(path):
            if name == "trio" or name.startswith("trio."):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports trio")
            if name.startswith("trioka") and not name.startswith(allowed):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name} (up)")
    assert not offenders, offenders


def test_no_module_reaches_into_another_objects_private_state():
    """`other._name` outside `self`/`cls`: a handler or owner reaching into private state
    instead of calling the owner's public method."""
    offenders = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                    not node.attr.startswith("__") and \
                    not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders
