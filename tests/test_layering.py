"""Imports point down: every import of every .py of the project (module level and inside functions) is parsed with
``ast``, mapped to its package and layer, and an arrow to a higher layer, to a sibling package of the same layer,
to a top-level script or into tests/ fails with a readable list. Also: no module imports another module's private
name (``from x import _y`` or ``x._y`` on an imported module), and every module that keeps imports inside functions
says why once near its top (a ``# Lazy import`` comment).

The layering (bottom to top; docs/design.md, "Import layering"):
  1 utils  2 config  3 models, sync_batchnorm  4 dataset, inference, training, evaluation (training -> dataset
  only)  5 server, demo  6 the top-level scripts, benchmarks/, tests/ (nothing imports them; tests import scripts).
"""
from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = {"utils": 1, "config": 2, "models": 3, "sync_batchnorm": 3, "dataset": 4, "inference": 4, "training": 4,
          "evaluation": 4, "server": 5, "demo": 5}
TOP = 6                                   # top-level scripts, benchmarks/, tests/
# Arrows allowed besides "own package" and "a lower layer".
ALLOWED = {
    ("training", "dataset"): "the trainers read the prepared data sets",
    ("tests", "script"): "tests drive the command-line entry points",
    ("benchmarks", "script"): "benchmarks time the entry points users run (inference_function, client_LawDNet)",
    ("benchmarks", "tests"): "benchmarks time ours against the literal reference implementations (tests/*_reference.py)",
}
LAZY_NOTE = re.compile(r"^# Lazy imports?\b", re.M)
# Modules whose function-level imports wait for a change in flight there (their hunks are kept to import lines).
LAZY_PENDING: dict = {}


@dataclass(frozen=True)
class Arrow:
    path: str        # importing file, relative to the root
    line: int
    source: str      # importing module (dotted)
    target: str      # imported module (dotted)

    def __str__(self):
        return f"{self.path}:{self.line}: {self.source} [{package_of(self.source)}] -> {self.target} " \
               f"[{package_of(self.target)}]"


def _project_files(root):
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in ("__pycache__", "node_modules"))
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.relpath(os.path.join(d, f), root)


class Project:
    """The project's modules under ``root``: dotted names, and what a bare import name resolves to (the scripts
    and benchmarks put the root, tests/ and benchmarks/ on sys.path)."""

    def __init__(self, root):
        self.root = root
        self.files = {}                                   # dotted module -> relative path
        for rel in _project_files(root):
            parts = rel[:-3].split(os.sep)
            if parts[0] in ("tests", "benchmarks") and len(parts) == 2:
                parts = [parts[0] + "." + parts[1]]       # "tests.test_x": one flat namespace each
            if parts[-1] == "__init__":
                parts = parts[:-1]
            self.files[".".join(parts)] = rel
        self.flat = {m.split(".", 1)[1]: m for m in self.files if m.startswith(("tests.", "benchmarks."))}

    def resolve(self, name: str):
        """The project module (dotted) a bare import name means, or None for a third-party / stdlib one."""
        head = name.split(".")[0]
        if head in LAYERS or head in self.files:
            return name
        if head in self.flat:
            return self.flat[head]
        return None

    def is_module(self, dotted: str) -> bool:
        return dotted in self.files


def package_of(module: str) -> str:
    head = module.split(".")[0]
    if head in LAYERS or head in ("tests", "benchmarks"):
        return head
    return "script"


def layer_of(module: str) -> int:
    return LAYERS.get(package_of(module), TOP)


def allowed(source: str, target: str) -> bool:
    src, dst = package_of(source), package_of(target)
    if src == dst and src != "script":
        return True
    if (src, dst) in ALLOWED:
        return dst != "tests" or target.endswith("_reference")
    if dst in ("script", "tests", "benchmarks"):
        return False                                       # nothing imports the top layer
    return layer_of(target) < layer_of(source)


def _module_name(rel: str) -> str:
    parts = rel[:-3].split(os.sep)
    if parts[0] in ("tests", "benchmarks") and len(parts) == 2:
        return parts[0] + "." + parts[1]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(project: Project, rel: str, source: str | None = None):
    """(line, target module, imported name or None, bound name, inside a function) for every import of a file
    (``source``: its text, default read from disk); the target is None for a third-party or stdlib module."""
    text = source if source is not None else open(os.path.join(project.root, rel), encoding="utf-8").read()
    tree = ast.parse(text, rel)
    me = _module_name(rel)
    is_pkg = rel.endswith("__init__.py")
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    target = project.resolve(a.name)
                    out.append((child.lineno, target, None, a.asname or a.name.split(".")[0], fn))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = me.split(".") if is_pkg else me.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = project.resolve(child.module)
                for a in child.names:
                    out.append((child.lineno, target, a.name, a.asname or a.name, fn))
            visit(child, fn)

    visit(tree, False)
    return tree, out


def check(project: Project, sources: dict | None = None):
    """(upward arrows, private-name uses, modules with unexplained lazy imports) of the whole project;
    ``sources`` maps relative paths to replacement texts (used by the self-test)."""
    sources = sources or {}
    arrows, private, unexplained = [], [], []
    for module, rel in sorted(project.files.items()):
        text = sources.get(rel)
        if text is None:
            text = open(os.path.join(project.root, rel), encoding="utf-8").read()
        tree, found = imports_of(project, rel, text)
        module_aliases = {}
        lazy = False
        for line, target, name, bound, in_function in found:
            lazy = lazy or in_function
            if target is None:
                continue
            if not allowed(module, target) and Arrow(rel, line, module, target) not in arrows:
                arrows.append(Arrow(rel, line, module, target))
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                private.append(f"{rel}:{line}: from {target} import {name}")
            sub = f"{target}.{name}" if name else target
            if project.is_module(sub):
                module_aliases[bound] = sub
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in module_aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                private.append(f"{rel}:{node.lineno}: {module_aliases[node.value.id]}.{node.attr}")
        if (lazy and package_of(module) not in ("tests", "benchmarks") and not LAZY_NOTE.search(text)
                and rel not in LAZY_PENDING):
            unexplained.append(rel)
    return arrows, private, unexplained


@pytest.fixture(scope="module")
def project():
    return Project(ROOT)


@pytest.fixture(scope="module")
def report(project):
    return check(project)


def test_every_import_points_down(report):
    arrows = report[0]
    assert not arrows, "imports that point up or sideways (see the layering in this file's docstring):\n" + \
        "\n".join(map(str, arrows))


def test_no_module_uses_another_modules_private_names(report):
    private = report[1]
    assert not private, "private names used across modules (make them public in their one home):\n" + \
        "\n".join(private)


def test_modules_with_lazy_imports_say_why(report):
    unexplained = report[2]
    assert not unexplained, ("modules importing inside functions without a '# Lazy import(s) ...' comment saying "
                             "why (start-up time or an optional dependency); hoist the rest:\n" + "\n".join(unexplained))


def test_the_checker_reports_planted_violations(project):
    """The checks above can fail: plant an upward import, a sideways one, a script import and a private name."""
    planted = {
        "utils/errors.py": open(os.path.join(ROOT, "utils/errors.py")).read()
        + "\n\ndef _planted():\n    from models.lawdnet import LawDNet  # upward\n    return LawDNet\n",
        "inference/frames.py": open(os.path.join(ROOT, "inference/frames.py")).read()
        + "\nfrom evaluation import core as _core  # sideways in layer 4\nfrom ..config.config import _base_type\n",
        "dataset/index.py": open(os.path.join(ROOT, "dataset/index.py")).read()
        + "\nimport train_syncnet  # a script\nfrom utils import atomic\natomic._x = 1\n",
    }
    arrows, private, unexplained = check(project, planted)
    got = {(a.path, a.target) for a in arrows}
    assert ("utils/errors.py", "models.lawdnet") in got
    assert ("inference/frames.py", "evaluation") in got
    assert ("dataset/index.py", "train_syncnet") in got
    assert any("config.config import _base_type" in p for p in private), private
    assert any("utils.atomic._x" in p for p in private), private
    assert "utils/errors.py" in unexplained
    # and a clean relative import inside a package is fine
    assert allowed("training.trainer", "dataset.clip_dataset") and not allowed("dataset.index", "training.options")
    assert allowed("tests.test_x", "train_syncnet") and not allowed("demo.training", "train_syncnet")
    assert not allowed("utils.face.align", "config.profile") and allowed("config.profile", "utils.errors")
