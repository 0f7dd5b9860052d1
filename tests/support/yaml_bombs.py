"""YAML documents that expand far beyond their size, for the loader's limits and the commands that read YAML."""

from __future__ import annotations


def shared_alias_bomb(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """`levels` anchors, each a list of `width` aliases to the one before: few aliases, width**levels nodes."""
    lines = [f"{indent}l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"
