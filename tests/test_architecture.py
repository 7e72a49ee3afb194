"""The package's floors hold: imports point only down, and none hides inside a function.

The floors, lowest first: ``errors, io, locking, seeds, paths, runinfo, device`` → ``objectives`` →
``models`` → ``methods | data`` → ``config`` → ``runs`` → ``training`` → ``evaluation`` →
``inference`` → ``serve | generate | archive`` → ``recipes`` → ``cli``. The contract is
``[tool.importlinter]`` in pyproject.toml; import-linter checks every import, module-level or not.

An import of a package module inside a function hides a dependency (and often a cycle) from the
reader; each one left is on :data:`ALLOWED` with its reason. An import of another package inside
a function (a heavy optional dependency, e.g. the web server) carries a comment on its line that
says why it is deferred.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "vlvae"

#: (file relative to src/vlvae, function) -> why its in-function import of a vlvae module stays.
ALLOWED = {
    ("__init__.py", "__getattr__"): "vlvae.load imports the model stack on first use, so that `import vlvae` "
    "(data-generation workers, `vlvae --version`) does not pay for torch and Lightning",
}

#: (file, function) -> why it imports a vlvae module by name (importlib.import_module).
ALLOWED_DYNAMIC = {
    ("methods/__init__.py", "get_method"): "the method registry imports its own package's modules",
    ("datasets/__init__.py", "get_dataset"): "the data-set registry imports its own package's modules",
}


def _function_imports(path: Path):
    """(function name, line, imported module, line's source) of every import inside a function."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if function is not None and isinstance(child, ast.Import):
                found.extend(
                    (function, child.lineno, alias.name, lines[child.lineno - 1]) for alias in child.names
                )
            elif function is not None and isinstance(child, ast.ImportFrom):
                module = "." * child.level + (child.module or "")
                found.append((function, child.lineno, module, lines[child.lineno - 1]))
            visit(child, name)

    visit(tree, None)
    return found


def _dynamic_imports(path: Path):
    """(function name, line, module string) of every import_module("vlvae...") call."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                callee = (
                    child.func.attr
                    if isinstance(child.func, ast.Attribute)
                    else getattr(child.func, "id", "")
                )
                if callee == "import_module" and child.args:
                    arg = child.args[0]
                    text = ast.unparse(arg)
                    if "vlvae" in text:
                        found.append((function, child.lineno, text))
            visit(child, name)

    visit(tree, None)
    return found


def _sources():
    return sorted(SRC.rglob("*.py"))


def test_import_contract_holds():
    """import-linter's layers contract (pyproject.toml) is kept."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = [str(lint_imports)] if lint_imports.exists() else [sys.executable, "-m", "importlinter.cli"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_package_import_hides_in_a_function():
    hidden = []
    for path in _sources():
        rel = path.relative_to(SRC).as_posix()
        for function, line, module, _ in _function_imports(path):
            if (module.startswith("vlvae") or module.startswith(".")) and (rel, function) not in ALLOWED:
                hidden.append(f"src/vlvae/{rel}:{line} in {function}(): {module}")
    assert not hidden, "move these imports to module level (or to the right floor):\n" + "\n".join(hidden)


def test_every_deferred_import_says_why():
    silent = []
    for path in _sources():
        rel = path.relative_to(SRC).as_posix()
        for function, line, module, text in _function_imports(path):
            if not module.startswith("vlvae") and "#" not in text:
                silent.append(f"src/vlvae/{rel}:{line} in {function}(): {module}")
    assert not silent, "a deferred import needs a comment saying why:\n" + "\n".join(silent)


def test_no_package_module_is_imported_by_name():
    dynamic = []
    for path in _sources():
        rel = path.relative_to(SRC).as_posix()
        for function, line, text in _dynamic_imports(path):
            if (rel, function) not in ALLOWED_DYNAMIC:
                dynamic.append(f"src/vlvae/{rel}:{line} in {function}(): import_module({text})")
    assert not dynamic, "import these modules by an import statement:\n" + "\n".join(dynamic)


@pytest.mark.parametrize("entry", sorted(ALLOWED) + sorted(ALLOWED_DYNAMIC), ids=str)
def test_each_allowed_entry_is_still_needed(entry):
    """An allow-list entry whose import is gone is removed from the list."""
    rel, function = entry
    path = SRC / rel
    assert path.is_file(), f"{rel} is gone; remove its entry"
    functions = {f for f, *_ in _function_imports(path)} | {f for f, *_ in _dynamic_imports(path)}
    assert function in functions, f"{rel}:{function} imports nothing by now; remove its entry"
