"""Write the Quarto markdown of an executed document: what Quarto stores in `result.markdown`.

Follows `jupyterToMarkdown`/`mdFromCodeCell` of Quarto 1.8 for HTML output (spec section 5): prose is
copied verbatim, each code cell becomes a `.cell` div with its code block and one div per output, and
figures are named and sized as Quarto names and sizes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field

from . import fixups
from .qmd import CELL_OPTION_KEYS, INLINE, Cell, Document

# Keys Quarto handles itself and never forwards onto the cell div (kJupyterCellInternalOptionKeys + standard
# and third-party metadata keys).
INTERNAL_KEYS = frozenset(
    """eval echo warning error output include label classes panel column fig-cap fig-subcap fig-scap
    fig-cap-location tbl-cap-location cap-location fig-column tbl-column fig-link fig-align fig-alt fig-env
    fig-pos lst-label lst-cap out-width out-height md-indent code-fold code-line-numbers code-summary
    code-overflow html-table-processing collapsed autoscroll deletable format name id colab colab_type
    outputid lines_to_next_cell language""".split()
)
# For HTML, Quarto prefers widgets, javascript and html, then markdown, images, and text last.
MIME_PRIORITY = [
    "application/vnd.jupyter.widget-state+json",
    "application/vnd.jupyter.widget-view+json",
    "application/javascript",
    "text/html",
    "text/markdown",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "text/plain",
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
IMAGE_EXT = {"image/png": "png", "image/jpeg": "jpeg", "image/svg+xml": "svg", "application/pdf": "pdf"}
FIGURE_ATTRS = ["fig-align", "fig-env", "fig-alt", "fig-pos", "fig-scap"]

# Quarto 1.8's header for documents with HTML/JS outputs (src/core/jupyter/widgets.ts).
HTML_INCLUDE = (
    '<script src="https://cdn.jsdelivr.net/npm/requirejs@2.3.6/require.min.js" integrity="sha384-c9c+LnTbwQ3aujuU7ULEPVvgLs+Fn6fJUvIGTsuu1ZcCf11fiEubah0ttpca4ntM sha384-6V1/AdqZRWk1KAlWbKBlGhN7VG4iE/yAZcO6NZPMF8od0vukrvr0tg4qY6NSrItx" crossorigin="anonymous"></script>\n'
    '<script src="https://cdn.jsdelivr.net/npm/jquery@3.5.1/dist/jquery.min.js" integrity="sha384-ZvpUoO/+PpLXR1lu4jmpXWu80pZlYUAfxl5NsBMWOEPSjUn/6Z/hRTt8+pR6L4N2" crossorigin="anonymous" data-relocate-top="true"></script>\n'
    "<script type=\"application/javascript\">define('jquery', [],function() {return window.jQuery;})</script>\n"
)


@dataclass
class Rendered:
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)  # file name in figure-html/ -> bytes
    has_html: bool = False
    pieces: list[str] = field(default_factory=list)  # the markdown of each chunk, in order


def strip_ansi(text: str) -> str:
    """Quarto before 1.7 strips ANSI colours; the spec recommends it (plain fences render in every version)."""
    return ANSI.sub("", text)


def js_string(value) -> str:
    """JavaScript's String(value) for the YAML scalars that cell options hold."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(js_string(v) for v in value)
    return str(value)


def js_json(value) -> str:
    """JavaScript's JSON.stringify for option values."""
    def norm(v):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v
    return json.dumps(norm(value), separators=(",", ":"), ensure_ascii=False)


def cell_id(doc: Document, cell: Cell) -> str:
    """Quarto writes a random 8-hex id for unlabelled cells; we derive the same shape from note and cell."""
    basis = f"{doc.path.as_posix()}\n{cell.index}\n" + "\n".join(cell.option_lines + cell.code)
    return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:8]


def text_of(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def fence_for(lines: list[str], minimum: int = 3) -> str:
    """Backticks for a fenced block: one more than the longest leading run (Quarto counts leading spaces too)."""
    longest = 0
    for line in lines:
        m = re.match(r"^\s*`+", line)
        if m:
            longest = max(longest, len(m.group(0)))
    return "`" * max(minimum, longest + 1)


def enclosed(open_fence: str, text: str, close_fence: str) -> str:
    return f"{open_fence}\n{text}{'' if text.endswith(chr(10)) else chr(10)}{close_fence}\n"


def code_output(text: str) -> str:
    fence = fence_for(text.split("\n"))
    return enclosed(fence, text, fence)


def png_size(data: bytes) -> tuple[int, int, int | None]:
    """(width, height, dpi) of a PNG; dpi from its pHYs chunk when that is in metres."""
    width, height = struct.unpack(">II", data[16:24])
    pos, dpi = 8, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"pHYs":
            ppx, ppy, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            if unit == 1 and ppx == ppy:
                dpi = int(ppx * 0.0254 + 0.5)
            break
        if kind == b"IDAT":
            break
        pos += 12 + length
    return width, height, dpi


def mime_for(output: dict) -> str | None:
    data = output.get("data", {})
    for mime in MIME_PRIORITY:
        if mime in data:
            return mime
    return None


def is_image(output: dict) -> bool:
    return output.get("output_type") in ("display_data", "execute_result") and mime_for(output) in IMAGE_EXT


def discardable(output: dict, have_image: bool) -> bool:
    """Matplotlib's return values ([<matplotlib.lines.Line2D ...>]) that Quarto drops."""
    if output.get("output_type") != "execute_result":
        return False
    data = output.get("data", {})
    if list(data) != ["text/plain"]:
        return False
    text = data["text/plain"]
    lines = text if isinstance(text, list) else str(text).splitlines(keepends=True) or [""]
    if have_image and len(lines) == 1:
        return re.match(r"^([<(\[]).*?([>)\]])$", lines[0].strip()) is not None
    return any(lines[0].startswith(p) for p in ("[<matplotlib", "<matplotlib", "<seaborn.", "<ggplot:"))


def merge_streams(outputs: list[dict]) -> list[dict]:
    """Quarto 1.5+ merges adjacent stream outputs of the same name."""
    merged: list[dict] = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1] = {**merged[-1], "text": text_of(merged[-1]["text"]) + text_of(out["text"])}
        else:
            merged.append(out)
    return merged


def option(cell: Cell, doc_options: dict, key: str, default):
    if key in cell.options and cell.options[key] is not None:
        return cell.options[key]
    if key in doc_options and doc_options[key] is not None:
        return doc_options[key]
    return default


def render_prose(lines: list[str], values: dict[str, dict] | None = None) -> str:
    """A prose chunk as Quarto writes it; inline `{python} expr` replaced by its value when given."""
    if values:
        lines = [INLINE.sub(lambda m: _inline_value(values, m), line) for line in lines]
    return "\n".join(lines) + "\n\n"


def _inline_value(values: dict[str, dict], match: re.Match) -> str:
    """resolveUserExpressions: html and latex as raw inline, markdown as is, strings unquoted and escaped."""
    data = values.get(match.group(2).strip())
    mime = mime_for({"data": data}) if data else None
    if not mime:
        return match.group(0)
    value = text_of(data[mime])
    if mime == "text/html":
        value = f"`{value}`{{=html}}"
    elif mime == "text/latex":
        value = f"`{value}`{{=tex}}"
    elif mime != "text/markdown" and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].replace("\\", "\\\\")
        value = re.sub(r"([\\`*_{}\[\]()>#+,\-.!])", r"\\\1", value)  # Quarto's class has the range +-.
    return match.group(1) + value


def prose_texts(doc: Document, inline: dict[int, dict[str, dict]] | None = None,
                title_fixup: bool = True) -> tuple[str, dict[int, str]]:
    """The markdown Quarto writes for the prose: (a chunk it puts first, or ""; {chunk number: text}).

    Prose is verbatim except for Quarto's front-matter rewrites (see fixups.py): the first raw front matter
    loses a `jupyter:` key, and with `title_fixup` (website and single-file documents) a first heading becomes
    the title when the front matter has none. A chunk Quarto drops is "".
    """
    chunks: list[tuple[str, list[str] | None]] = []
    first_raw = True
    for chunk in doc.chunks:
        lines: list[str] | None = chunk.lines
        if chunk.kind == "raw" and first_raw:
            first_raw = False
            lines = fixups.strip_jupyter_key(chunk.lines)
        chunks.append((chunk.kind, lines))
    prefix = None
    if title_fixup:
        prefix, changed = fixups.front_matter_title(chunks)
        chunks = [(kind, changed.get(i, lines)) for i, (kind, lines) in enumerate(chunks)]
    texts = {i: render_prose(lines, (inline or {}).get(i)) if lines is not None else ""
             for i, (kind, lines) in enumerate(chunks) if kind != "code"}
    return (render_prose(prefix) if prefix else ""), texts


def render(doc: Document, outputs: dict[int, list[dict] | None], doc_options: dict | None = None,
           stem: str | None = None, inline: dict[int, dict[str, dict]] | None = None,
           title_fixup: bool = True) -> Rendered:
    """Markdown for the whole document, given each code cell's outputs (None when not evaluated)."""
    doc_options = doc_options or {}
    stem = stem or doc.path.stem
    result = Rendered(markdown="")
    prefix, prose = prose_texts(doc, inline, title_fixup)
    parts: list[str] = []
    for outs in outputs.values():
        for out in outs or []:
            if out.get("output_type") in ("display_data", "execute_result"):
                if {"text/html", "application/javascript"} & set(out.get("data", {})):
                    result.has_html = True
    for number, chunk in enumerate(doc.chunks):
        if chunk.cell is None:
            parts.append(prose[number])
        else:
            parts.append(render_cell(doc, chunk.cell, outputs.get(chunk.cell.index) or [], doc_options,
                                     stem, result.figures))
    if parts and prefix:
        parts[0] = prefix + parts[0]  # the title block Quarto puts first belongs to the first chunk's piece
    result.markdown = prefix if not parts else "".join(parts)
    result.pieces = parts
    return result


def render_cell(doc: Document, cell: Cell, outputs: list[dict], doc_options: dict, stem: str,
                figures: dict[str, bytes]) -> str:
    if not option(cell, doc_options, "include", True):
        return "\n"  # mdFromCodeCell returns nothing; only jupyterToMarkdown's "\n" remains
    opts = cell.options
    echo = option(cell, doc_options, "echo", True)
    show_output = option(cell, doc_options, "output", True)
    warnings = option(cell, doc_options, "warning", True)
    if doc_options.get("output") is False and opts.get("output") is not False:
        warnings = bool(opts.get("warning", False))
    have_image = any(is_image(o) for o in outputs)
    outputs = [o for o in merge_streams(outputs)
               if not (o.get("output_type") == "stream" and o.get("name") == "stderr" and not warnings)
               and not discardable(o, have_image)]
    if not cell.code and not cell.option_lines and not outputs:
        return "\n"
    asis = show_output == "asis"

    label = cell.label
    display = [o for o in outputs if o.get("output_type") in ("display_data", "execute_result")]
    fig_cap = opts.get("fig-cap")
    label_on_container = bool(
        not show_output or not display or (len(display) > 1 and not isinstance(fig_cap, list))
        or (label or "").startswith("tbl-")
    )
    head = ["::: {"]
    if label and label_on_container:
        head.append(f"#{label} ")
    elif label:
        head.append(f"#cell-{label} ")
    else:
        head.append(f"#{cell_id(doc, cell)} ")
    head.append(".cell ")

    # captions: a list gives one per output; fig-cap + fig-subcap puts fig-cap after the outputs
    cell_caption = None
    if isinstance(fig_cap, list):
        out_caps = [js_string(c) for c in fig_cap] if display else []
    elif fig_cap:
        if "fig-subcap" in opts:
            sub = opts["fig-subcap"]
            sub = [""] if sub is True else (sub if isinstance(sub, list) else [js_string(sub)])
            cell_caption, out_caps = js_string(fig_cap), [js_string(s) for s in sub]
        else:
            out_caps = [js_string(fig_cap)]
    else:
        out_caps = []
    out_caps = [c.strip().replace("\n", " ") for c in out_caps]

    classes = opts.get("classes") or []
    classes = list(classes) if isinstance(classes, list) else [classes]
    for key, prefix in (("panel", "panel-"), ("column", "column-"), ("fig-column", "fig-column-"),
                        ("tbl-column", "tbl-column-")):
        if isinstance(opts.get(key), str):
            classes.append(prefix + opts[key])
    if isinstance(opts.get("cap-location"), str):
        classes.append(f"caption-{opts.get('fig-cap-location')}")  # sic: Quarto reads fig-cap-location here
    if isinstance(opts.get("fig-cap-location"), str):
        classes.append("fig-cap-location-" + opts["fig-cap-location"])
    if isinstance(opts.get("tbl-cap-location"), str):
        classes.append("tbl-cap-location-" + opts["tbl-cap-location"])
    if classes:
        head.append(" ".join(c if str(c).startswith(".") else "." + str(c) for c in map(js_string, classes)) + " ")

    # unknown keys are forwarded as attributes: metadata keys (not cell-option keys) first, as Quarto merges them
    meta_keys = [k for k in opts if k not in CELL_OPTION_KEYS and k != "id"]
    option_keys = [k for k in opts if k in CELL_OPTION_KEYS]
    forwarded = False
    for key in meta_keys + option_keys:
        if key.lower() in INTERNAL_KEYS:
            continue
        value = opts[key]
        if value is None:
            continue
        value = value if isinstance(value, str) else js_json(value)
        head.append(f"{key}='{value.replace(chr(39), chr(92) + chr(39))}' ")
        forwarded = True
    need_cell = bool((label and label_on_container) or classes or forwarded or cell_caption is not None or out_caps)
    head.append(f"execution_count={cell.index} ")
    div_begin = "".join(head).rstrip(" ") + "}\n"

    md: list[str] = []
    if echo:
        md.append(code_block(cell, opts, echo == "fenced"))

    if show_output:
        label_name = label.replace(":", "-") if label else f"cell-{cell.index + 1}"
        output_name = f"{auto_identifier(label_name)}-output"
        suffix = 1
        for index, out in enumerate(outputs):
            kind = out.get("output_type")
            is_display = kind in ("display_data", "execute_result")
            out_label = label
            if label and label_on_container and is_display:
                out_label = f"{label}-{suffix}"
                suffix += 1
            if out.get("metadata", {}).get("quarto_display") is False:
                continue
            if not asis:
                md.append("\n::: {")
                mime = mime_for(out) if is_display else None
                if (out_label and is_display and not (label or "").startswith("tbl-")
                        and mime not in IMAGE_EXT):
                    md.append(f"#{out_label} ")
                md.append(".cell-output ")
                if kind == "stream":
                    md.append(f".cell-output-{out.get('name')}")
                elif is_display:
                    md.append(".cell-output-display")
                else:
                    md.append(f".cell-output-{kind}")
                if is_display and mime == "text/markdown":
                    md.append(" .cell-output-markdown")
                if kind == "execute_result" and isinstance(out.get("execution_count"), int):
                    md.append(f" execution_count={out['execution_count']}")
                if opts.get("html-table-processing") == "none":
                    md.append(" html-table-processing=none")
                md.append("}\n")
            fig_opts = {}
            for name in FIGURE_ATTRS + ["fig-link"]:
                value = opts.get(name)
                if isinstance(value, list):
                    value = value[index] if index < len(value) else None
                fig_opts[name] = value or None
            if kind == "stream":
                text = text_of(out.get("text", ""))
                if out.get("name") == "stderr":
                    text = re.sub(r"<ipython-input.*?>:\d+:\s+", "", text, count=1)
                    # ipykernel names cells /tmp/ipykernel_<pid>/<hash>.py: drop the per-run folder (determinism)
                    text = re.sub(r"(?:/[^\s:]*)?/ipykernel_\d+/(\d+\.py)", r"\1", text)
                md.append(text if asis and out.get("name") == "stdout" else code_output(strip_ansi(text)))
            elif kind == "error":
                tb = strip_ansi("\n".join(out.get("traceback", [])))
                head_line = f"{out.get('ename')}: {strip_ansi(out.get('evalue', ''))}"
                md.append(code_output(head_line + ("\n" + tb if out.get("traceback") else "")))
            elif is_display and out.get("data"):
                caption = out_caps.pop(0) if out_caps else None
                md.append(display_md(out, out_label, caption, f"{output_name}-{index + 1}", stem, fig_opts, figures,
                                     retina_dpi(doc_options)))
                if caption and mime_for(out) not in IMAGE_EXT:
                    md.append(f"\n{caption}\n")
            if not asis:
                md.append(":::\n")

    text = ""
    if md and (need_cell or not asis):
        text = div_begin + "".join(md)
        if cell_caption:
            text += "\n" + cell_caption + "\n"
        text += ":::\n"
    elif md:
        text = "".join(md)
    return text + "\n" + "\n"


def retina_dpi(doc_options: dict) -> int | None:
    """The PNG dpi at which Quarto halves width/height: twice fig-dpi, when fig-format is retina."""
    if doc_options.get("fig-format", "retina") != "retina":
        return None
    try:
        return int(doc_options.get("fig-dpi", 96)) * 2
    except (TypeError, ValueError):
        return None


def auto_identifier(name: str) -> str:
    """Pandoc's auto identifier, as Quarto applies it to figure file names."""
    name = name.lower()
    name = re.sub(r"[^\w\s.-]", "", name)
    name = re.sub(r"\s+", "-", name.strip())
    return name


def code_block(cell: Cell, opts: dict, fenced: bool) -> str:
    source = list(cell.shown_code)
    if fenced:
        option_src = [ln for ln in cell.option_lines if not re.search(r"\|\s+echo:\s+fenced\s*$", ln)]
        while source and not source[-1].strip():
            source.pop()
        if not option_src:
            while source and not source[0].strip():
                source.pop(0)
        source = ["```{{python}}"] + option_src + source + ["```", ""]
    ticks = fence_for(cell.shown_code, 4 if fenced else 3)
    attrs = ""
    if isinstance(opts.get("lst-label"), str):
        lst = opts["lst-label"]
        attrs += (lst if lst.startswith("#") else "#" + lst) + " "
    if not fenced:
        attrs += ".python"
    attrs += " .cell-code"
    if opts.get("code-overflow") == "wrap":
        attrs += " .code-overflow-wrap"
    elif opts.get("code-overflow") == "scroll":
        attrs += " .code-overflow-scroll"
    if isinstance(opts.get("lst-cap"), str):
        attrs += f' lst-cap="{opts["lst-cap"]}"'
    for key in ("code-fold", "code-summary", "code-line-numbers"):
        if key in opts:
            attrs += f' {key}="{js_string(opts[key])}"'
    return f"{ticks} {{{attrs}}}\n" + "\n".join(source) + "\n" + ticks + "\n"


def display_md(out: dict, label: str | None, caption: str | None, filename: str, stem: str,
               fig_opts: dict, figures: dict[str, bytes], retina_dpi: int | None = 192) -> str:
    mime = mime_for(out)
    data = out["data"][mime]
    if mime in IMAGE_EXT:
        return image_md(out, mime, label, caption, filename, stem, fig_opts, figures, retina_dpi)
    if mime == "text/markdown":
        return text_of(data) + "\n"
    if mime == "text/html":
        text = text_of(data)
        fence = fence_for(text.split("\n"))
        return enclosed(fence + "{=html}", text, fence)
    if mime == "application/javascript":
        script = f'<script type="{mime}">\n{text_of(data)}\n</script>'
        fence = fence_for(script.split("\n"))
        return enclosed(fence + "{=html}", script, fence)
    if mime == "text/plain":
        text = strip_ansi(text_of(data))
        if text.startswith("'<table") and text.endswith("</table>'") and "\n" not in text:
            return text[1:-1] + "\n"
        return code_output(text)
    return code_output(f"Unable to display output for mime type(s): {', '.join(out['data'])}")


def image_md(out: dict, mime: str, label: str | None, caption: str | None, filename: str, stem: str,
             fig_opts: dict, figures: dict[str, bytes], retina_dpi: int | None = 192) -> str:
    data = text_of(out["data"][mime])
    meta = out.get("metadata", {}).get(mime) or {}
    width = meta.get("out-width") or meta.get("width") or 0
    height = meta.get("out-height") or meta.get("height") or 0
    ext = IMAGE_EXT[mime]
    name = f"{filename}.{ext}"
    if mime == "image/svg+xml" and "<svg" in data:
        figures[name] = data.encode("utf-8")
    else:
        raw = base64.b64decode(data.replace("\n", ""))
        if mime == "image/png":
            px_w, px_h, dpi = png_size(raw)
            if retina_dpi and dpi == retina_dpi:  # retina PNG at twice fig-dpi: Quarto halves the pixel size
                width, height = int(px_w / 2 + 0.5), int(px_h / 2 + 0.5)
        figures[name] = raw
    attrs = []
    if label:
        attrs.append(f"#{label}")
    if width:
        attrs.append(f"width={js_string(width)}")
    if height:
        attrs.append(f"height={js_string(height)}")
    for key in FIGURE_ATTRS:
        if fig_opts.get(key):
            attrs.append(f"{key}='{js_string(fig_opts[key]).replace(chr(39), chr(92) + chr(39))}'")
    image = f"![{caption or ''}]({stem}_files/figure-html/{name}){{{' '.join(attrs)}}}"
    if fig_opts.get("fig-link"):
        image = f"[{image}]({fig_opts['fig-link']})"
    return image + "\n"
