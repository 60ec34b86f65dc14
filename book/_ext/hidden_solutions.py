"""Make sphinx-exercise's ``hide_solutions`` remove *gated* solutions too.

sphinx-exercise drops ``{solution}`` directives when ``hide_solutions`` is true, but for the gated
form (``{solution-start}`` ... code cells ... ``{solution-end}``) it drops only the start marker:
the code cells between stay on the page and the orphaned end marker stops the build. The book's
coding exercises use the gated form, so that their solution code is executed (and checked) by the
build and by nbval. With this extension the student edition removes everything from
``solution-start`` to ``solution-end``.
"""

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx_exercise.directive import SolutionStartDirective
from sphinx_exercise.nodes import solution_end_node


class hidden_solution_start(nodes.Element):
    """Where a hidden gated solution began (removed with its content before writing)."""


class SolutionStart(SolutionStartDirective):
    def run(self):
        nodes_ = super().run()  # registers the start for sphinx-exercise's structure check
        if self.env.app.config.hide_solutions:
            return [hidden_solution_start()]
        return nodes_


class RemoveHiddenGatedSolutions(SphinxTransform):
    """Delete every hidden gated solution: the marker, the content after it, and its end marker."""

    default_priority = 5  # after sphinx-exercise's structure check (1), before its merge (10)

    def apply(self):
        if not self.config.hide_solutions:
            return
        for start in list(self.document.findall(hidden_solution_start)):
            parent = start.parent
            children = list(parent.children)
            i = children.index(start)
            j = next(k for k in range(i, len(children)) if isinstance(children[k], solution_end_node))
            for child in children[i : j + 1]:
                parent.remove(child)


def setup(app):
    app.setup_extension("sphinx_exercise")
    app.add_directive("solution-start", SolutionStart, override=True)
    app.add_transform(RemoveHiddenGatedSolutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
