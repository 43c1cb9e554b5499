"""Interactive pictures in a notebook: sliders that redraw a figure.

:func:`interact` is what the notebooks use instead of ``ipywidgets.interact``
with ``plt.show()`` in the callback.  That pattern goes through pyplot's list
of open figures, which the whole kernel shares: the inline backend's
``plt.show()`` and ``flush_figures`` (which ``ipywidgets.interact`` calls
before and after every update) show *every* open figure and then close them
all.  Since JupyterLab 4.4 sends widget messages to a kernel subshell
(setting ``commsOverSubshells``, default ``perCommTarget``) and ipykernel 7
runs a subshell in a thread of its own, a slider's callback runs while a cell
runs in the main thread: each thread then shows, renders and closes the
other's figures, half drawn.  In JupyterLab the picture came back all white,
or with the axes of two figures on top of each other (issue 23), while the
same update sent to an idle kernel without a browser was fine.

Here each update draws its own figure, renders exactly that figure to a PNG
(under :data:`mixviz.viz.style.DRAW_LOCK`), shows it in the picture's own
output and closes it; nothing looks at pyplot's list of figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mixviz.viz._common import DPI, PNG_COLORS, png_bytes, unmanaged_figures

__all__ = ["interact", "show"]


def show(fig: Figure, dpi: int = DPI, colors: int | None = PNG_COLORS) -> None:
    """Show ``fig`` in the notebook as a palette PNG (:func:`png_bytes`) and close it.

    Only this figure: unlike ``plt.show()``, which shows every open pyplot
    figure (also one another thread is drawing) and closes them all.  Works
    from any thread; outside IPython it only closes the figure.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    try:
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:  # no IPython: nothing to show it in
            return
        if get_ipython() is not None:
            display(Image(data=png_bytes(fig, dpi, colors), format="png"))
    finally:
        plt.close(fig)  # only this one (a no-op for a figure pyplot does not list)


def interact(f: Callable[..., Any], *, manual: bool = False, button: str = "Run Interact",
             **controls: Any) -> None:
    """Show ``controls`` (ipywidgets: sliders, dropdowns) and, under them,
    what ``f(**values)`` shows, redrawn whenever a value changes (with
    ``manual``: when the button is pressed).

    ``f`` takes the controls' values as keyword arguments and returns a
    Figure (shown with :func:`show`) or None; what it displays itself (a
    table) goes to the same output.  Like ``ipywidgets.interact`` it displays
    the widget at once and draws the first picture (not with ``manual``);
    unlike it, it never calls ``plt.show()`` or the inline backend's
    ``flush_figures``, so a callback running in a kernel subshell's thread and
    a cell running in the main thread cannot show or close each other's
    figures; the figures ``f`` makes with :mod:`mixviz.viz` are not even in
    pyplot's list (:func:`unmanaged_figures`).  Returns None (the widget is
    displayed, not returned: a cell ending in this call shows it once).
    Raises ImportError without ipywidgets (the notebooks then show a static
    version).
    """
    import ipywidgets as widgets
    from IPython import get_ipython
    from IPython.display import clear_output, display

    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not controls:
        raise ValueError("interact needs at least one control (a keyword argument that is an ipywidget)")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"{name} must be an ipywidgets control with a value (a slider, a dropdown), "
                            f"got {type(control).__name__}")
    out = widgets.Output()

    def update(*_: Any) -> None:
        with out:
            clear_output(wait=True)
            try:
                with unmanaged_figures():  # nobody else's plt.show() or flush shows or closes it
                    fig = f(**{name: control.value for name, control in controls.items()})
                if fig is not None:
                    show(fig)
            except Exception:
                shell = get_ipython()
                if shell is None:
                    raise
                shell.showtraceback()

    children: list[Any] = list(controls.values())
    if manual:
        run = widgets.Button(description=button)
        run.on_click(update)
        children.append(run)
    else:
        for control in controls.values():
            control.observe(update, names="value")
    box = widgets.VBox([*children, out])
    box.add_class("widget-interact")
    display(box)
    if not manual:
        update()
