"""Plain-text renderers for a grid (header + rows of strings): Markdown pipe tables and LaTeX booktabs
tabulars; and atomic file writes for the outputs."""
from pathlib import Path

from .record import write_bytes_atomic


def markdown_cell(text) -> str:
    """Text from result files made inert in Markdown: one line, `|` escaped, no raw HTML."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub pipe table; cells go through `markdown_cell`."""
    def line(cells):
        return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, rows)])


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "†": r"$^\dagger$", "·": r"$\cdot$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_table(header: list[str], rows: list[list[str]], caption: str = "", label: str = "",
                n_left: int = 1) -> str:
    """A booktabs `table` with a `tabular`: the first `n_left` columns left-aligned, the rest centred."""
    spec = "l" * n_left + "c" * (len(header) - n_left)
    body = [" & ".join(latex_escape(c) for c in header) + r" \\", r"\midrule"]
    body += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_text_atomic(path: str | Path, text: str) -> Path:
    """UTF-8 text written atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))
