"""Interactive widgets (ipywidgets) on top of the views: the explorer."""
