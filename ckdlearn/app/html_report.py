"""Self-contained HTML reports: text, tables and figures in one folder.

A :class:`Report` collects sections and writes ``report.html`` with the
PNG files it shows beside it, so the folder opens offline in any browser
and can be zipped or archived as it is. It writes only those named files
(through :func:`ckdlearn.utils.files.write_files`, each atomically) and leaves
everything else in the folder alone.
"""

import html
import io
import json
import warnings
from pathlib import Path

from ..utils.deprecation import renamed_keyword
from ..utils.files import check_outputs, write_files

__all__ = ["Report", "figure_png", "prepare_output_path"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1d2430; line-height: 1.45; padding: 0 1rem; }
h1 { border-bottom: 3px solid #2f6f9f; padding-bottom: .3rem; }
h2 { color: #2f6f9f; margin-top: 2.2rem; border-bottom: 1px solid #d6dde6; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d6dde6; padding: .3rem .6rem; text-align: right; }
th { background: #eef3f8; } td:first-child, th:first-child { text-align: left; }
tr.baseline td { color: #5b6675; font-style: italic; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #d6dde6; }
figcaption { font-size: .88rem; color: #4a5566; }
pre { background: #f5f7fa; padding: .8rem; overflow-x: auto; font-size: .85rem; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .5rem .8rem; }
.muted { color: #5b6675; font-size: .88rem; }
"""


def prepare_output_path(path, *, force=False):
    """Deprecated: use :func:`ckdlearn.utils.files.check_outputs`.

    ``check_outputs([path], overwrite=force)`` refuses the same existing
    output, and also an output that cannot be written; this function will
    be removed in a future release.

    Parameters
    ----------
    path : str or Path
        The file or folder about to be written.
    force : bool, default=False
        Allow replacing an existing output.

    Returns
    -------
    path : Path
    """
    warnings.warn(
        "prepare_output_path is deprecated; use ckdlearn.utils.files.check_outputs([path], "
        "overwrite=...) instead. It will be removed in a future release.",
        FutureWarning,
        stacklevel=2,
    )
    path = Path(path)
    if path.is_dir() and not force:  # check_outputs names files; a report folder may exist
        raise FileExistsError(f"{path} already exists; choose another output, or pass overwrite=True.")
    if not path.is_dir():
        check_outputs([path], overwrite=force)
    return path


def figure_png(figure, *, dpi=110):
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


class Report:
    """An HTML report assembled section by section.

    Parameters
    ----------
    title : str
        Heading and page title.

    Examples
    --------
    >>> import tempfile
    >>> import matplotlib.pyplot as plt
    >>> from ckdlearn.app.html_report import Report
    >>> report = Report("Demo")
    >>> report.add_section("Scores")
    >>> report.add_table([["accuracy", 0.9]], header=["metric", "value"])
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> report.add_figure(fig, "line", caption="A line.")
    >>> path = report.write(tempfile.mkdtemp() + "/report")
    >>> sorted(p.name for p in path.parent.iterdir())
    ['line.png', 'report.html']
    """

    def __init__(self, title):
        self.title = title
        self._parts = []
        self._figures = {}

    def add_section(self, heading):
        """Start a new section with a heading."""
        self._parts.append(f"<h2>{html.escape(heading)}</h2>")

    def add_text(self, text, *, css_class=None):
        """Add a paragraph of plain text (escaped)."""
        attribute = f' class="{css_class}"' if css_class else ""
        self._parts.append(f"<p{attribute}>{html.escape(text)}</p>")

    def add_preformatted(self, text):
        """Add text shown verbatim, e.g. a configuration."""
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def add_json(self, data):
        """Add a JSON dump of ``data``."""
        self.add_preformatted(json.dumps(data, indent=2, sort_keys=True, default=str))

    def add_table(self, rows, *, header=None, float_format="{:.3f}", row_classes=None):
        """Add a table; floats are formatted with ``float_format``.

        ``row_classes`` optionally gives a CSS class per row (None for
        none), e.g. ``"baseline"`` for the rows of trivial baselines.
        """

        def cell(value, tag):
            if isinstance(value, float):
                value = float_format.format(value)
            return f"<{tag}>{html.escape(str(value))}</{tag}>"

        classes = row_classes or [None] * len(rows)
        lines = ["<table>"]
        if header is not None:
            lines.append("<tr>" + "".join(cell(h, "th") for h in header) + "</tr>")
        for row, css_class in zip(rows, classes):
            opening = f'<tr class="{css_class}">' if css_class else "<tr>"
            lines.append(opening + "".join(cell(v, "td") for v in row) + "</tr>")
        lines.append("</table>")
        self._parts.append("\n".join(lines))

    def add_figure(self, figure, name, *, caption=None, dpi=110):
        """Add a matplotlib figure, saved as ``<name>.png`` beside the report.

        The figure is rendered now and closed, so reports of many figures
        do not hold them all in memory.
        """
        if name in self._figures:
            raise ValueError(f"A figure named {name!r} is already in the report.")
        self._figures[name] = figure_png(figure, dpi=dpi)
        caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(
            f'<figure><img src="{html.escape(name)}.png" alt="{html.escape(caption or name)}">'
            f"{caption_html}</figure>"
        )

    def to_html(self):
        """The report page as a string."""
        body = "\n".join(self._parts)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    @renamed_keyword("force", "overwrite")
    def write(self, folder, *, overwrite=False):
        """Write ``report.html`` and its figures into ``folder``.

        Only these files are written, each atomically, the page last; other
        files in ``folder`` are left as they are.

        Parameters
        ----------
        folder : str or Path
            Output folder; created (with normal permissions) if missing.
        overwrite : bool, default=False
            Replace a report's files already in ``folder``.

        Returns
        -------
        path : Path
            The written ``report.html``.

        Raises
        ------
        FileExistsError
            If one of the files exists and ``overwrite`` is False; nothing is
            written then.
        """
        files = {f"{name}.png": data for name, data in self._figures.items()}
        files["report.html"] = self.to_html().encode("utf-8")
        return write_files(folder, files, overwrite=overwrite)[-1]
