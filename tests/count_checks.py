"""Count the suite's test functions and assertions (issue 14: a faster suite must not have fewer of either).

    python tests/count_checks.py [DIR]    (default: the tests/ folder this file is in)

Two counts of each, over every .py file under DIR:

* text: lines matching ``def test_`` (``async def test_`` too) and ``assert`` statements as words at the start of a
  statement (``assert x``), the way ``grep`` would count them;
* ast: test functions (``FunctionDef``/``AsyncFunctionDef`` named ``test_*``) and ``assert`` statements
  (``ast.Assert``) as Python parses them, plus calls of ``pytest.raises``/``np.testing.assert_*`` and other
  ``assert_*`` helpers, which check as much as an ``assert``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

TEST_DEF = re.compile(r"^\s*(async\s+)?def\s+test_\w*\s*\(", re.M)
ASSERT = re.compile(r"^\s*assert\b", re.M)


def _is_check_call(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name == "raises" or name.startswith("assert_")


def count(root: Path) -> dict[str, int]:
    totals = {"files": 0, "text_test_defs": 0, "text_asserts": 0, "ast_test_functions": 0, "ast_asserts": 0,
              "ast_check_calls": 0}
    for path in sorted(root.rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        totals["files"] += 1
        totals["text_test_defs"] += len(TEST_DEF.findall(src))
        totals["text_asserts"] += len(ASSERT.findall(src))
        for node in ast.walk(ast.parse(src, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                totals["ast_test_functions"] += 1
            elif isinstance(node, ast.Assert):
                totals["ast_asserts"] += 1
            elif isinstance(node, ast.Call) and _is_check_call(node):
                totals["ast_check_calls"] += 1
    return totals


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for k, v in count(root).items():
        print(f"{k:<20}{v:>6}")
