"""Mend viewcode's links: module pages Sphinx cannot parse, and backlinks to re-exports.

Sphinx 9's source parser (``sphinx.pycode.ast``) fails on a dict display
with ``**`` entries (``{"a": 1, **b}``), and viewcode then lists the
module in "Module code" without writing its page: the dead ``_modules``
links of ``ckdlearn.cam``, ``ckdlearn.metrics`` and two
``model_selection`` modules, whose ``validate_params`` constraints are
built that way. The fix is installed only where the parser has the fault.

viewcode also gives each module one dotted prefix for all its ``[docs]``
backlinks, taken from the first page that documents one of its objects;
``ckdlearn.CKDNetClassifier`` (a re-export of ``ckdlearn.estimator``'s)
then sends ``CosineAnnealing``'s backlink to ``#ckdlearn.CosineAnnealing``
on a page whose anchor is ``ckdlearn.estimator.CosineAnnealing``. Each
backlink into an autosummary page is pointed at that page's own object.
"""

import ast
import re

from sphinx.pycode import ast as sphinx_ast


def _visit_dict(self, node):
    return "{" + ", ".join(
        f"**{self.visit(value)}" if key is None else f"{self.visit(key)}: {self.visit(value)}"
        for key, value in zip(node.keys, node.values)
    ) + "}"


def _parser_fails_on_unpacking():
    try:
        sphinx_ast.unparse(ast.parse("{'a': 1, **b}").body[0].value)
    except ValueError:
        return True
    return False


_BACKLINK = re.compile(r'href="([^"]*generated/)([^"/]+)\.html#([^"]+)"')


def _mend_backlink(match):
    folder, page, anchor = match.groups()
    # A method's anchor extends its class page's name; only a name that
    # ends like the page's but under another prefix is a re-export's.
    if anchor.startswith(page) or anchor.rsplit(".", 1)[-1] != page.rsplit(".", 1)[-1]:
        return match.group(0)
    return f'href="{folder}{page}.html#{page}"'


def _mend_backlinks(app, pagename, templatename, context, doctree):
    if pagename.startswith("_modules/") and "body" in context:
        context["body"] = _BACKLINK.sub(_mend_backlink, context["body"])


def setup(app):
    if _parser_fails_on_unpacking():
        sphinx_ast._UnparseVisitor.visit_Dict = _visit_dict
    app.connect("html-page-context", _mend_backlinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
