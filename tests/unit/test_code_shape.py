"""The design's size rules, checked on the code as it is: modules <= 400 lines, functions <= 60 lines,
the doit wiring <= 250 lines, and every module opens with a docstring."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / 'tg_pipeline'
MODULES = sorted(PACKAGE.rglob('*.py'))


def test_modules_are_at_most_400_lines_and_say_what_they_are():
    too_long = {str(m.relative_to(PACKAGE)): n for m in MODULES if (n := len(m.read_text().splitlines())) > 400}
    assert too_long == {}
    undocumented = [str(m.relative_to(PACKAGE)) for m in MODULES
                    if m.read_text().strip() and ast.get_docstring(ast.parse(m.read_text())) is None]
    assert undocumented == []


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
    assert len((PACKAGE / 'tasks.py').read_text().splitlines()) <= 250
