"""Every relative link in README.md and docs/*.md points to a file that exists, and an #anchor on a Markdown
file to one of its headings (GitHub's slug rule: lower case, punctuation dropped, spaces to hyphens)."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"```.*?```", re.S)


def _pages():
    return [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _anchors(path):
    text = FENCE.sub("", open(path, encoding="utf-8").read())
    heads = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _links(path):
    text = FENCE.sub("", open(path, encoding="utf-8").read())
    found = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    return [t for t in found if not re.match(r"[a-z]+:", t)]


def test_docs_exist():
    names = {os.path.basename(p) for p in _pages()}
    assert {"README.md", "original.md", "benchmarks.md", "design.md"} <= names


def test_every_relative_link_resolves():
    broken = []
    for page in _pages():
        for target in _links(page):
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(dest):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target} (no such file)")
            elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_code_cites_docs_that_exist():
    """Comments cite docs/<page>.md; each cited page must exist (the original's spec is not in the repository)."""
    missing = set()
    for dirpath, dirnames, files in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                for page in re.findall(r"docs/([\w-]+\.md)", text):
                    if not os.path.exists(os.path.join(ROOT, "docs", page)):
                        missing.add(f"{os.path.relpath(os.path.join(dirpath, f), ROOT)}: docs/{page}")
    assert not missing, "\n".join(sorted(missing))
