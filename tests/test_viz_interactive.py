"""mixviz.viz.interact and viz.show: interactive pictures that do not go
through pyplot's shared list of figures (issue 23: a slider's callback runs in
a kernel subshell's thread while cells draw in the main thread).  The real
browser is tests/test_browser.py."""

from __future__ import annotations

import threading

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from mixviz import viz
from mixviz.analysis import dm
from mixviz.viz._common import new_figure, unmanaged_figures


def _bars():
    return viz.gradient_bars(dm.loss_table(0.5, eta=1.0, num_classes=10))


def test_unmanaged_figures_are_not_in_pyplots_list_and_draw_the_same():
    plt.close("all")
    listed = _bars()
    assert plt.get_fignums() == [listed.number]
    with unmanaged_figures():
        plain = _bars()
        fig, axes = new_figure(1, 3, figsize=(6.0, 2.0), sharey=True)
    assert plt.get_fignums() == [listed.number]
    assert isinstance(plain, Figure) and axes.shape == (1, 3) and fig.get_layout_engine() is None
    assert axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[0, 2])
    assert viz.png_bytes(plain) == viz.png_bytes(listed)
    plt.close("all")


def test_unmanaged_is_per_thread():
    seen = {}

    def other():
        seen["other"] = _bars()

    with unmanaged_figures():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(60)
    assert seen["other"].number in plt.get_fignums()  # the other thread still makes pyplot figures
    plt.close("all")


def test_show_closes_only_its_figure():
    plt.close("all")
    keep, shown = _bars(), _bars()
    viz.show(shown)  # outside IPython: nothing to show it in, but it is closed
    assert plt.get_fignums() == [keep.number]
    with pytest.raises(TypeError, match="Figure"):
        viz.show("not a figure")
    plt.close("all")


def test_pictures_from_two_threads_at_once_are_drawn():
    """Two threads drawing and rendering at once (DRAW_LOCK): every PNG is the same, none blank."""
    expected = viz.png_bytes(_bars())
    plt.close("all")
    results, errors = [], []

    def draw():
        try:
            for _ in range(3):
                with unmanaged_figures():
                    results.append(viz.png_bytes(_bars()))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 6
    assert all(png == expected for png in results)


def test_interact_needs_widgets_and_a_callable():
    pytest.importorskip("ipywidgets")
    import ipywidgets as widgets

    with pytest.raises(TypeError, match="callable"):
        viz.interact(3, lam=widgets.FloatSlider())
    with pytest.raises(ValueError, match="control"):
        viz.interact(lambda: None)
    with pytest.raises(TypeError, match="lam"):
        viz.interact(lambda lam: None, lam=0.5)


def test_interact_redraws_on_change_and_manual_waits_for_the_button(monkeypatch):
    pytest.importorskip("ipywidgets")
    import ipywidgets as widgets

    from mixviz.viz import interactive

    calls, shown = [], []
    monkeypatch.setattr(interactive, "show", lambda fig: (shown.append(fig), plt.close(fig)))
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)

    def picture(lam):
        calls.append((lam, len(plt.get_fignums())))
        return _bars()

    plt.close("all")
    lam = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05)
    assert viz.interact(picture, lam=lam) is None
    lam.value = 0.6
    assert [c[0] for c in calls] == [0.5, 0.6] and len(shown) == 2
    assert plt.get_fignums() == []  # drawn outside pyplot's list
    calls.clear()
    other = widgets.FloatSlider(value=0.5)
    viz.interact(picture, manual=True, lam=other)
    other.value = 0.7
    assert calls == []  # manual: nothing until the button is pressed


def test_inline_hooks_that_draw_every_figure_run_in_the_main_thread_only():
    """The comm package fires post_execute after every widget message, in the subshell's thread that handles
    it: the hooks that draw, show and close every pyplot figure must not run there."""
    pytest.importorskip("IPython")
    from IPython.core.events import EventManager, available_events

    from mixviz.viz._common import _flush_in_main_thread_only

    calls = []

    def _draw_all_if_interactive():
        calls.append("draw")

    def flush_figures():
        calls.append("flush")

    def other():
        calls.append(f"other in {threading.current_thread().name}")

    class Shell:
        pass

    shell = Shell()
    shell.events = EventManager(shell, available_events)
    for hook in (_draw_all_if_interactive, flush_figures, other):
        shell.events.register("post_execute", hook)
    _flush_in_main_thread_only(shell)
    shell.events.register("post_execute", flush_figures)  # enable_matplotlib again, then inline_png again
    _flush_in_main_thread_only(shell)
    assert len(shell.events.callbacks["post_execute"]) == 3
    shell.events.trigger("post_execute")
    assert sorted(calls) == ["draw", "flush", "other in MainThread"]
    calls.clear()
    thread = threading.Thread(target=shell.events.trigger, args=("post_execute",), name="subshell")
    thread.start()
    thread.join(30)
    assert calls == ["other in subshell"]
