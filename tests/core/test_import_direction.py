"""The direction of dependencies: the core (``qdeploy/``) imports neither passes nor targets at module level;
targets never import another target. Lazy imports inside functions are how the core reaches its plugins."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import executed when the module is imported (top level, incl. if/try blocks)."""
    found = []

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((node.lineno, node.module))
            elif isinstance(node, (ast.If, ast.Try)):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue  # typing-only imports are not executed
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text()).body)
    return found


def test_core_modules_import_no_pass_or_target_at_module_level():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "qdeploy").rglob("*.py"))
        for line, module in _module_level_imports(path)
        if module.startswith(("qdeploy.passes", "qdeploy.targets"))
    ]
    assert not offenders, "\n".join(offenders)


def test_targets_do_not_import_each_other_and_passes_import_no_target():
    targets = sorted(p.name for p in (ROOT / "targets").iterdir() if (p / "__init__.py").exists())
    offenders = []
    for path in sorted((ROOT / "targets").rglob("*.py")) + sorted((ROOT / "passes").rglob("*.py")):
        own = path.relative_to(ROOT).parts
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                if not module.startswith("qdeploy.targets."):
                    continue
                imported = module.split(".")[2]
                if own[0] == "passes" or (imported in targets and imported != own[1]):
                    offenders.append(f"{'/'.join(own)}:{node.lineno} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_a_module_level_import(tmp_path):
    """The scanner itself: a top-level import is found, one inside a function is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import qdeploy.passes.graph\ntry:\n    from qdeploy.targets import x\nexcept ImportError:\n    pass\n"
        "def f():\n    import qdeploy.targets.hls4ml\n"
    )
    assert [m for _, m in _module_level_imports(sample)] == ["qdeploy.passes.graph", "qdeploy.targets"]
