"""Execute a note's Python cells in a fresh Jupyter kernel, as Quarto's jupyter engine does.

The kernel gets Quarto's HTML setup (7x5 in figures at 96 dpi, retina PNGs) plus a few settings that make
outputs byte-identical between runs. A failing cell is reported with the note's path, the line of the
cell in the .qmd, the exception and the traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from .markdown import strip_ansi
from .qmd import Cell, Document

# Quarto's setup.py for HTML (defaults fig-width 7, fig-height 5, fig-format retina, fig-dpi 96), plus
# determinism: fixed SVG ids. `%reset -f` leaves the user namespace empty, as Quarto's `%reset` does.
KERNEL_SETUP = """\
import matplotlib
import matplotlib.pyplot as plt
plt.rcParams['figure.figsize'] = ({width}, {height})
plt.rcParams['figure.dpi'] = {dpi}
plt.rcParams['savefig.dpi'] = 'figure'
plt.rcParams['svg.hashsalt'] = 'mlnotes'
from matplotlib_inline.backend_inline import set_matplotlib_formats
set_matplotlib_formats({format!r})
%reset -f
"""
FIGURE_DEFAULTS = {"fig-width": 7, "fig-height": 5, "fig-format": "retina", "fig-dpi": 96}


def figure_options(doc_options: dict) -> dict:
    return {k: doc_options.get(k, v) for k, v in FIGURE_DEFAULTS.items()}

# One BLAS thread and a fixed hash seed: results do not depend on scheduling or on --jobs.
KERNEL_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "SOURCE_DATE_EPOCH": "0",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


@dataclass
class CellFailure:
    """Where and why a note failed."""

    path: Path
    line: int  # where the failing cell starts
    ename: str
    evalue: str
    traceback: str
    failing_line: int | None = None  # the line inside the cell, when the traceback names it

    def report(self) -> str:
        where = f" (line {self.failing_line})" if self.failing_line and self.failing_line != self.line else ""
        if self.ename == "SystemExit":  # IPython's traceback only suggests %tb
            value = f"({self.evalue!r})" if self.evalue and not self.evalue.lstrip("-").isdigit() else f"({self.evalue})"
            return f"{self.path}:{self.line}: the cell starting here called sys.exit{value}, which stops the note."
        head = f"{self.path}:{self.line}: the cell starting here raised {self.ename}: {self.evalue}{where}"
        return f"{head}\n{self.traceback}".rstrip()


@dataclass
class Execution:
    """The outputs of every code cell (None for eval: false), or the failure that stopped the note."""

    outputs: dict[int, list[dict] | None] = field(default_factory=dict)  # cell index -> nbformat outputs
    inline: dict[int, dict[str, dict]] = field(default_factory=dict)  # chunk number -> {expression: mime data}
    failure: CellFailure | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


def _truthy(value, default: bool) -> bool:
    return default if value is None else bool(value)


def execute(doc: Document, doc_options: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> Execution:
    """Run every evaluated cell of `doc` in order in a new kernel whose working directory is the note's folder."""
    doc_options = doc_options or {}
    start = time.perf_counter()
    result = Execution()
    cells = doc.cells
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    fig = figure_options(doc_options)
    setup = KERNEL_SETUP.format(width=fig["fig-width"], height=fig["fig-height"], dpi=fig["fig-dpi"],
                                format=str(fig["fig-format"]))
    nb.cells = [nbformat.v4.new_code_cell(setup)] + [nbformat.v4.new_code_cell("\n".join(c.code)) for c in cells]
    cwd = str(cwd or Path(doc.path).resolve().parent)
    saved_env = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": cwd}}, record_timing=False)
    try:
        return _run(client, nb, doc, doc_options, cwd, result)
    except RuntimeError as e:  # the kernel could not start (e.g. no ipykernel in this environment)
        result.failure = CellFailure(doc.path, 1, "KernelError", f"the Jupyter kernel did not start: {e}", "")
        return result
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        result.seconds = time.perf_counter() - start


def _run(client: NotebookClient, nb, doc: Document, doc_options: dict, cwd: str, result: Execution) -> Execution:
    """The setup cell, then every chunk in order: code cells, and the inline expressions of prose."""
    with client.setup_kernel(cwd=cwd, stderr=subprocess.DEVNULL), _quiet_when_interrupted():
        client.execute_cell(nb.cells[0], 0, store_history=False)
        setup_errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
        if setup_errors:
            err = setup_errors[0]
            result.failure = CellFailure(doc.path, 1, err.ename, err.evalue,
                                         strip_ansi("\n".join(err.traceback)))
            return result
        for number, chunk in enumerate(doc.chunks):
            cell = chunk.cell
            if cell is None:
                exprs = chunk.inline_expressions()
                if exprs and _truthy(doc_options.get("eval"), True):
                    values, failure = _evaluate_inline(client, doc.path, chunk.line, exprs)
                    if failure:
                        result.failure = failure
                        return result
                    result.inline[number] = values
                continue
            if not _truthy(cell.options.get("eval"), _truthy(doc_options.get("eval"), True)):
                result.outputs[cell.index] = None
                continue
            i = cell.index
            nbcell = nb.cells[i]
            try:
                client.execute_cell(nbcell, i, execution_count=cell.index, store_history=True)
            except (CellTimeoutError, DeadKernelError) as e:  # a hung cell or a crashed kernel
                result.failure = CellFailure(doc.path, cell.line, type(e).__name__, str(e).strip(), "")
                return result
            outputs = [dict(o) for o in nbcell.outputs]
            result.outputs[cell.index] = outputs
            errors = [o for o in outputs if o.get("output_type") == "error"]
            allow = _truthy(cell.options.get("error"), _truthy(doc_options.get("error"), False))
            if errors and not allow:
                err = errors[0]
                result.failure = _failure(doc.path, cell, err)
                return result
    return result


@contextlib.contextmanager
def _quiet_when_interrupted():
    """On Ctrl-C or SIGTERM the running cell's asyncio task is left behind; shutting the kernel down then fails it
    with "Kernel died", which asyncio prints to stderr as "Task exception was never retrieved" with a traceback.
    The interrupt is reported in one sentence by the caller: silence asyncio before the kernel is shut down."""
    try:
        yield
    except KeyboardInterrupt:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
        raise


def _evaluate_inline(client, path: Path, line: int, exprs: list[str]) -> tuple[dict, CellFailure | None]:
    """Evaluate inline expressions as Quarto does: kernel user_expressions, after the cells before them."""
    msg_id = client.kc.execute("", silent=False, store_history=False,
                               user_expressions={str(i): e for i, e in enumerate(exprs)})
    # nbclient's timeout handling needs a cell (it names it in the error): the expressions stand in for one
    stand_in = nbformat.v4.new_code_cell("; ".join(exprs))
    try:
        reply = client.wait_for_reply(msg_id, stand_in)
    except (CellTimeoutError, DeadKernelError) as e:
        where = "; ".join(f"`{{python}} {x}`" for x in exprs)
        return {}, CellFailure(path, line, type(e).__name__, str(e).strip().split("\n")[0],
                               f"in the inline expression {where}")
    values = {}
    for i, expr in enumerate(exprs):
        res = reply["content"].get("user_expressions", {}).get(str(i), {})
        if res.get("status") != "ok":
            return {}, CellFailure(path, line, res.get("ename", "Error"), res.get("evalue", ""),
                                   f"in the inline expression `{{python}} {expr}`")
        values[expr] = res.get("data", {})
    return values, None


def _failure(path: Path, cell: Cell, err: dict) -> CellFailure:
    tb = strip_ansi("\n".join(err.get("traceback", [])))
    failing = None
    # Point at the failing line when IPython's traceback names it ("----> 5 x = 1/0" is line 5 of the code).
    m = re.search(r"^-+> (\d+)", tb, re.M)
    if m:
        n = int(m.group(1))
        if 1 <= n <= len(cell.code):
            failing = cell.code_line + n - 1
    return CellFailure(path, cell.line, err.get("ename", "Error"), err.get("evalue", ""), tb, failing)
