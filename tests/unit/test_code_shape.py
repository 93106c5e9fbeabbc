"""The design's rules, checked on the code as it is: the layer contract of pyproject.toml ([tool.importlinter],
run by lint-imports), no import cycle among tg_pipeline's modules (imports inside functions count too), at most 8
modules directly under tg_pipeline/, functions <= 60 lines, the doit wiring thin, and every module opens with a
docstring."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / 'tg_pipeline'
MODULES = sorted(PACKAGE.rglob('*.py'))


def test_every_module_says_what_it_is():
    undocumented = [str(m.relative_to(PACKAGE)) for m in MODULES
                    if m.read_text().strip() and ast.get_docstring(ast.parse(m.read_text())) is None]
    assert undocumented == []


def test_the_layer_contract_holds():
    result = subprocess.run([str(Path(sys.executable).with_name('lint-imports')), '--no-cache'], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'broken' in result.stdout and '0 broken' in result.stdout


def import_cycles(package: str) -> list[list[str]]:
    """The groups of modules that import each other in a loop (Tarjan's strongly connected components)."""
    import grimp
    graph = grimp.build_graph(package, include_external_packages=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))
    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    assert import_cycles('tg_pipeline') == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / 'loop_pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'a.py').write_text('def f():\n    from loop_pkg import b\n')
    (package / 'b.py').write_text('from loop_pkg import a\n')
    (package / 'c.py').write_text('from loop_pkg import a\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles('loop_pkg') == [['loop_pkg.a', 'loop_pkg.b']]


def test_at_most_eight_modules_directly_under_the_package():
    top = sorted(p.name for p in PACKAGE.glob('*.py'))
    assert len(top) <= 8, top


def test_functions_are_at_most_60_lines():
    long = []
    for module in MODULES:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f'{module.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)')
    assert long == []


def test_the_doit_wiring_stays_thin():
    assert len((PACKAGE / 'workflow' / 'tasks.py').read_text().splitlines()) <= 250
