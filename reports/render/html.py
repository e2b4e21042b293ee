"""Render report blocks as one self-standing HTML page (figures linked as SVG)."""

from __future__ import annotations

import html
import re

from reports.render.document import Block, Code, Figure, Heading, Note, Paragraph, Table

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
code { background: #f6f6f6; padding: 0 0.2rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption, .caption { font-size: 0.9rem; color: #444; font-style: italic; }
.note { color: #666; border-left: 3px solid #ccc; padding-left: 0.6rem; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only inline markup blocks use)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(title: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<p class="note">{_inline(block.text)}</p>')
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Table):
            body.append(block.frame.to_html(index=block.index, border=0, escape=True))
            if block.caption:
                body.append(f'<p class="caption">{_inline(block.caption)}</p>')
        elif isinstance(block, Figure):
            commands = html.escape("\n".join(block.commands))
            body.append(
                f'<figure><a href="figures/{block.stem}.png">'
                f'<img src="figures/{block.stem}.svg" alt="{html.escape(block.caption)}"></a>'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
                f"<p>Reproduce:</p><pre><code>{commands}</code></pre>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
