"""docs/troubleshooting.md has an entry for every exception of the provider, and quotes messages as the code writes
them.

A quoted message is an inline code span in a paragraph that starts with ``**Message:**``.  In it, ``<...>`` stands
for a value and ``...`` for text left out, and so do the API's operation names and the error codes the provider
knows (the code fills them in).  Every other piece must be a substring of the provider's string literals, read in
source order (f-string pieces and implicitly concatenated literals joined), so a reworded message fails here until
its entry is updated.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import botocore.session
import pytest

from airflow_imagebuilder import exceptions
from airflow_imagebuilder._decisions import retry

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs/troubleshooting.md").read_text()
HEADINGS = set(re.findall(r"^## (.+)$", PAGE, re.M))


@pytest.mark.parametrize("name", exceptions.__all__)
def test_every_exception_has_an_entry(name):
    assert name in HEADINGS, f"docs/troubleshooting.md has no '## {name}' entry: add one (message, retried, why, fix)"


def literals(node: ast.AST) -> list[str]:
    """The string constants under ``node``, in source order."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    return [text for child in ast.iter_child_nodes(node) for text in literals(child)]


SOURCE = "\n".join(
    "".join(literals(ast.parse(path.read_text()))) for path in sorted((ROOT / "airflow_imagebuilder").rglob("*.py"))
)
#: Values the code fills in: API operation names and error codes.
FILLED_IN = sorted(
    {*botocore.session.get_session().get_service_model("imagebuilder").operation_names, *retry.ERROR_ACTIONS}
    | retry.AUTH_CODES,
    key=len,
    reverse=True,
)
WILDCARD = re.compile(r"\.\.\.|<[^<>`]+>|\b(?:" + "|".join(FILLED_IN) + r")\b")
QUOTES = [
    quote
    for paragraph in re.findall(r"^\*\*Message:\*\*(.*?)(?:\n\n|\Z)", PAGE, re.M | re.S)
    for quote in re.findall(r"`([^`]+)`", paragraph)
]


def test_the_page_quotes_messages():
    assert len(QUOTES) > 40


@pytest.mark.parametrize("quote", QUOTES)
def test_quoted_messages_are_the_codes(quote):
    missing = [piece for piece in map(str.strip, WILDCARD.split(quote)) if piece and piece not in SOURCE]
    assert not missing, f"{quote!r}: not in the provider's messages: {missing}"
