"""Formatting shared by every table: best / second marks, and a frame rendered as markdown, LaTeX or CSV."""

from __future__ import annotations

import pandas as pd


def rank_marks(values: pd.Series, higher: bool) -> dict:
    """index -> "best" / "second" for a column (NaN never ranks)."""
    order = values.dropna().sort_values(ascending=not higher).index.tolist()
    return {idx: mark for idx, mark in zip(order, ("best", "second"), strict=False)}


def decorate(text: str, mark: str | None, fmt: str) -> str:
    """Bold the best and underline the second, as the paper's tables do (CSV stays plain)."""
    if mark is None or fmt == "csv":
        return text
    if fmt == "latex":
        return f"\\textbf{{{text}}}" if mark == "best" else f"\\underline{{{text}}}"
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>"


def render(frame: pd.DataFrame, fmt: str, title: str, notes: list[str] = ()) -> str:
    """A titled table with its notes below (comment lines in CSV and LaTeX); empty for an empty frame."""
    if frame.empty:
        return ""
    if fmt == "csv":
        return "\n".join([f"# {title}", frame.to_csv().rstrip("\n"), *(f"# {n}" for n in notes)]) + "\n"
    if fmt == "latex":
        return "\n".join([f"% {title}", frame.to_latex(escape=False).rstrip("\n"), *(f"% {n}" for n in notes)]) + "\n"
    paragraphs = [line for note in notes for line in ("", note)]
    return "\n".join([f"### {title}", "", frame.to_markdown(disable_numparse=True), *paragraphs]) + "\n"
