"""What every command-line entry point shares: plain-text help from the module docstring, ``--version``."""
from __future__ import annotations

import argparse
import re

from harness import __version__
from harness.results.env import git_commit

__all__ = ["parser", "description", "add_version", "version_string"]


def description(doc: str | None) -> str:
    """A module docstring as plain ``--help`` text: reST markup removed, paragraphs kept whole."""
    text = re.sub(r"``([^`]+)``", r"\1", doc or "")
    text = re.sub(r":(?:func|class|mod|data|meth):`~?([^`]+)`", r"\1", text)
    return text.strip()


def version_string() -> str:
    commit = git_commit()
    return f"freezebench {__version__}" + (f" (git {commit})" if commit else " (no git checkout)")


def add_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=version_string(),
                   help="print the freezebench version and git commit, then exit")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is ``doc`` as plain text (line breaks kept) with ``--version``."""
    p = argparse.ArgumentParser(prog=prog, description=description(doc),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    return p
