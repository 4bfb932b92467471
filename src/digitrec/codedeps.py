"""Which of the package's modules a script can run, read from its import statements.

The DVC stages depend on exactly these files (a test holds `dvc.yaml` to them), and a
training run's resume fingerprint hashes them, so changed code never passes for the old.
Every import counts, also one inside a function that runs only sometimes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "digitrec"


def module_closure(entry: Path, source_root: Path) -> list[Path]:
    """The files of `PACKAGE` under `source_root` that `entry` imports, directly or not,
    sorted (`entry` itself is included only if it is one of them)."""
    seen: set[Path] = set()
    pending = [entry.resolve()]
    while pending:
        path = pending.pop()
        for name in imported_modules(path, source_root):
            file = module_file(name, source_root)
            if file is not None and file not in seen:
                seen.add(file)
                pending.append(file)
    return sorted(seen)


def imported_modules(path: Path, source_root: Path) -> set[str]:
    """Dotted names of every `PACKAGE` module `path` imports, with their parent packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path, source_root)
            if base is None:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    ours = {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}
    return {".".join(name.split(".")[:depth]) for name in ours
            for depth in range(1, name.count(".") + 2)}


def _absolute(node: ast.ImportFrom, path: Path, source_root: Path) -> str | None:
    if not node.level:
        return node.module
    try:
        package = path.resolve().parent.relative_to(source_root.resolve()).parts
    except ValueError:
        return None
    parts = list(package[: len(package) - node.level + 1])
    return ".".join(parts + ([node.module] if node.module else []))


def module_file(name: str, source_root: Path) -> Path | None:
    """The file that defines module `name` under `source_root`, if it is a module there."""
    base = source_root.resolve().joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def main(scripts: list[str]) -> None:
    """Print the code deps of each stage script as dvc.yaml lists them (run from the root)."""
    for script in map(Path, scripts):
        print(f"{script}:")
        for path in [script, *module_closure(script, Path("src"))]:
            print(f"      - {Path(path).resolve().relative_to(Path.cwd().resolve())}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
