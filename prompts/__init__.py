"""Prompt templates for the LLM-backed agents, one file per agent, versioned in their header."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    def render_user(self, **values: str) -> str:
        return self.user.format(**values)


@cache
def load_prompt(name: str) -> Prompt:
    """Files hold a `version:` line, then `## system` and `## user` sections."""
    text = resources.files(__name__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    header, _, rest = text.partition("## system")
    system, _, user = rest.partition("## user")
    version = next(line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("version:"))
    return Prompt(name=name, version=f"{name}@{version}", system=system.strip(), user=user.strip())
