"""Every repository path the user's guide names exists, so a renamed result folder cannot leave
README pointing at nothing. docs/performance.md is a dated history: only its docs/results/ paths
are held to this (older bench snapshots it cites left docs/ on purpose and live in git history)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_DIRS = ("docs", "flax_cnn", "parity", "torch_ref", "tests", "scripts", "results")
# a path in backticks or a markdown link target, starting at one of the repository's folders
PATH = re.compile(r"(?:`|\]\()((?:%s)/[^`)\s]*)" % "|".join(TOP_DIRS))
PLACEHOLDER = re.compile(r"[<>*{}…]")  # runs/<name>, seed1_*, {jax,torch}: patterns, not files


def named_paths(md: Path, under: str = "") -> list[str]:
    found = set()
    for ref in PATH.findall(md.read_text()):
        ref = ref.rstrip(".,:;").split(":")[0]  # drop ::test ids and :line suffixes
        if ref.startswith(under) and not PLACEHOLDER.search(ref):
            found.add(ref)
    return sorted(found)


def missing(md: Path, under: str = "") -> list[str]:
    return [r for r in named_paths(md, under)
            if not (ROOT / r).exists() and not (md.parent / r).exists()]


def test_every_path_the_guide_names_exists():
    md = ROOT / "README.md"
    assert len(named_paths(md)) >= 10, "the path pattern found almost nothing; has README's format changed?"
    assert missing(md) == []


def test_every_result_folder_the_history_names_exists():
    md = ROOT / "docs" / "performance.md"
    assert len(named_paths(md, "docs/results/")) >= 5
    assert missing(md, "docs/results/") == []
