"""The package's tree tells its layers: each group imports only the groups below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reminder"
# Lowest first. A module may import its own group and any group before it; the command
# line, `report` and the modules beside them sit above all of these.
LAYERS = ["core", "inputs", "storage", "mail", "service"]
TOP = len(LAYERS)


def layer(parts: tuple[str, ...]) -> int:
    return LAYERS.index(parts[0]) if len(parts) > 1 and parts[0] in LAYERS else TOP


def imports(path: Path) -> list[tuple[str, ...]]:
    """The package modules `path` imports, `if TYPE_CHECKING:` blocks included: a type
    from a layer above is a dependency on it all the same."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts[:-1]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = here[: len(here) - (node.level - 1)]
        module = tuple(node.module.split(".")) if node.module else ()
        if module:
            found.append(base + module)
        else:
            found.extend((*base, alias.name) for alias in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    own = layer(path.relative_to(PACKAGE).parts)
    above = [".".join(target) for target in imports(path) if layer(target) > own]
    assert above == [], f"{path} imports {above}"


def test_every_module_sits_in_a_layer_or_at_the_top_on_purpose() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"})
    assert top == ["cli"]
