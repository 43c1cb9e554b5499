"""Named presets, the comparison grid behind ``mixviz compare`` and its tables.

* :mod:`.presets` -- :class:`Preset` (regimes x seeds x methods), the built-in
  :data:`PRESETS` and the cells of a grid;
* :mod:`.compare` -- :func:`compare`: train every cell through the run store
  and write ``results.csv`` and the summary;
* :mod:`.tables` -- means with 95 % intervals over seeds and paired per-seed
  differences (mixing minus no mixing, DM minus the mixup CE);
* :mod:`.semi` -- the semi-supervised presets (``semi``, ``semi-quick``:
  FixMatch with and without mixup / DM x label counts x seeds), their grid,
  tables and figure;
* :mod:`.command` -- the ``mixviz compare`` command, which runs either grid;
* :mod:`.reproduce` -- ``mixviz reproduce``: train cells of a committed grid
  again in a fresh run store and check that its claims hold (imported on use).
"""

from mixviz.experiments.compare import (
    RESULT_COLUMNS,
    compare,
    default_jobs,
    estimated_cost,
    longest_first,
    result_row,
    train_cells,
    write_plots,
    write_summary,
)
from mixviz.experiments.command import register_command
from mixviz.experiments.presets import (
    CIFAR_ALPHA,
    POLICIES,
    PRESETS,
    SWEEP_ETAS,
    SWEEP_MODES,
    Cell,
    Preset,
    Variant,
    cells,
    dm_sweep_variants,
    grid,
    method_config,
    method_label,
    methods,
    preset,
)
from mixviz.experiments.tables import (
    EFFECT_METRICS,
    SUMMARY_METRICS,
    effects_markdown,
    headline,
    kind_of,
    paired_effects,
    summarize,
    summary_markdown,
    sweep_markdown,
    sweep_table,
    SWEEP_METRICS,
)

__all__ = ["Preset", "Variant", "Cell", "PRESETS", "POLICIES", "CIFAR_ALPHA", "SWEEP_ETAS", "SWEEP_MODES", "preset",
           "methods", "method_config", "method_label", "cells", "grid", "dm_sweep_variants", "RESULT_COLUMNS",
           "result_row", "compare", "default_jobs", "estimated_cost", "longest_first", "train_cells", "write_plots",
           "write_summary", "register_command",
           "SUMMARY_METRICS", "EFFECT_METRICS", "kind_of", "summarize", "paired_effects", "summary_markdown",
           "effects_markdown", "headline", "sweep_table", "sweep_markdown", "SWEEP_METRICS"]
