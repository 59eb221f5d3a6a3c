"""The documentation runs: every Python block of docs/*.md, and an up-to-date API page.

Each page's ```python blocks run in order, in one namespace, in a fresh
interpreter whose working directory is a temporary folder (the examples
save files). A page whose code fails, or an API reference that no longer
matches the docstrings, fails the suite.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = sorted(name for name in os.listdir(DOCS) if name.endswith(".md") and name != "api.md")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page):
    with open(os.path.join(DOCS, page), encoding="utf-8") as stream:
        return BLOCK.findall(stream.read())


def test_every_page_is_listed_in_the_index():
    with open(os.path.join(DOCS, "README.md"), encoding="utf-8") as stream:
        index = stream.read()
    for page in PAGES + ["api.md"]:
        if page != "README.md":
            assert f"({page})" in index, page


@pytest.mark.parametrize("page", [page for page in PAGES if python_blocks(page)])
def test_the_examples_of_each_page_run(page, tmp_path):
    code = "\n\n".join(python_blocks(page))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{page}:\n{done.stdout}\n{done.stderr}"


def test_the_api_reference_is_up_to_date():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "api_docs.py"),
                           "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
