"""Small pieces every chapter uses: scale presets and the scale admonition."""

from __future__ import annotations

from dataclasses import dataclass, field

SCALES = ("smoke", "quick", "paper")

__all__ = ["SCALES", "Preset", "admonition", "check_scale"]


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return scale


@dataclass
class Preset:
    """A chapter's parameters at one scale, with the deviations from the thesis they imply."""

    scale: str
    params: dict
    deviations: list[str] = field(default_factory=list)

    def __getattr__(self, name):
        try:
            return self.params[name]
        except KeyError:
            raise AttributeError(name) from None


def admonition(title: str, lines: list[str], kind: str = "note"):
    """A MyST admonition as notebook Markdown output (rendered by myst-nb)."""
    from IPython.display import Markdown

    body = "\n".join(f"- {line}" for line in lines) if lines else "No deviation from the thesis at this scale."
    return Markdown(f":::{{admonition}} {title}\n:class: {kind}\n{body}\n:::\n")
