"""Interactive widgets (ipywidgets) on top of the views: the explorer, the live generation view and
the branch explorer."""
from .branches import Branch, BranchExplorer
from .explorer import Explorer
from .stream import LiveGeneration, live

__all__ = ["Branch", "BranchExplorer", "Explorer", "LiveGeneration", "live"]
