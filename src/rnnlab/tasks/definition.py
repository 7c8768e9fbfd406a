"""What a task is, as one object: ``TaskDefinition``.  Each task module ends with ``TASK =
TaskDefinition(...)``; the registry (``rnnlab.tasks``) lists the modules, and every entry point
(command line, Python API, ``rnnlab.load``, demo, sweeps, reports, ONNX export) reads what it
needs from the definition instead of naming a task.

It imports nothing of rnnlab but the errors, so task modules can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApiData:
    """How ``rnnlab.fit(task, data=...)`` keeps in-memory data: as the file ``file_name`` in the run
    directory, named by the setting ``setting`` (``text``, ``csv``); ``to_bytes(data)`` checks the
    object (a ``UserError`` naming what is wrong) and returns the file's content."""

    setting: str
    file_name: str
    to_bytes: Callable
    accepts: str  # what data= may be, for messages ("a Python string of text")


@dataclass(frozen=True)
class OnnxIO:
    """A task's inputs and outputs around the recurrent core in an ONNX graph.

    ``graph(g, core, spec, params, meta, extras)`` adds the task's input and output nodes to the
    graph builder ``g`` and returns (input value infos, output value infos, state_h out, state_c
    out); ``core(x)`` builds the recurrent model on the node ``x`` ``[B, T, F]`` and returns
    (outputs ``[B, T, O]``, state_h out, state_c out).  ``extras(run_dir, which, meta)`` reads
    what the graph needs beyond the weights (forecast: its shrink weight); ``metadata(meta,
    extras)`` the task's own model properties; ``state`` False leaves the recurrent state out of the
    graph's inputs and outputs (a model whose every call starts from zeros).  ``sequence_io`` makes
    the usual one.
    """

    graph: Callable
    extras: Callable = lambda run_dir, which, meta: {}
    metadata: Callable = lambda meta, extras: {}
    state: bool = True  # the graph takes and returns the recurrent state (False: starts from zeros, returns none)


def sequence_io(input_name: str, output_name: str, ids: bool = False) -> OnnxIO:
    """One sequence in (``ids`` int64 ``[B, T]`` or values ``[B, T, F]``), one sequence out ``[B, T, O]``."""

    def graph(g, core, spec, params, meta, extras):
        kind = g.int64 if ids else g.elem
        shape = ["B", "T"] if ids else ["B", "T", spec.input_size]
        y, h_out, c_out = core(input_name)
        g.op("Identity", [y], [output_name])
        return (
            [g.helper.make_tensor_value_info(input_name, kind, shape)],
            [g.helper.make_tensor_value_info(output_name, g.elem, ["B", "T", spec.output_size])],
            h_out,
            c_out,
        )

    return OnnxIO(graph)


@dataclass(frozen=True)
class Forecaster:
    """What a task that forecasts a series gives rolling-origin backtests (``rnnlab.backtest``, the
    engine; the command line adds ``<task> backtest`` for it).  Its config has the split settings a
    backtest moves (``end``, ``test_fraction``, ``train_length``, ``val_fraction``, ``fractions``).

    The series: ``load_series(cfg)`` (``.times``, the time of each point; ``.source``),
    ``forecastable(cfg, series)`` (how many of its first points can be forecast: all for one step,
    all but the last H - 1 for H), ``describe_series(cfg, series)`` (the lines a backtest prints
    first).  A fit: ``points_needed(fit_cfg)`` ((points, why) one fit needs), ``origin_config(fit_cfg,
    series, first)`` (its settings: the points before ``first``), ``fit_facts(fit_cfg, series,
    start, stop)`` (what ``fit.json`` keeps of it beyond the engine's own), ``load_run(run_dir,
    which)``, ``fitted_points(loaded)`` (the points a saved fit says it saw).  The forecasts:
    ``origin_record(loaded, series, origin, facts)`` (one origin's, as JSON-ready data, checked by
    ``record_schema`` when read back), ``summarize(records, source, cfg, settings)`` (the
    verdict, ``backtest.json``), ``write_figures(out, records, result)``, ``report_parts(out,
    result)`` (what ``report.html`` shows: title, headline, figures, texts, tables) and
    ``print_summary(result, file)``.
    """

    load_series: Callable
    forecastable: Callable
    describe_series: Callable
    points_needed: Callable
    origin_config: Callable
    fit_facts: Callable
    load_run: Callable
    fitted_points: Callable
    origin_record: Callable
    record_schema: object
    summarize: Callable
    write_figures: Callable
    report_parts: Callable
    print_summary: Callable


@dataclass(frozen=True)
class TaskDefinition:
    """Everything the rest of rnnlab knows about one task.

    The run itself: ``open_task(cfg, meta, where)`` (the run's data and task object, see
    ``rnnlab.train.Task``), ``load_run(run_dir, which, backend)`` (a saved model),
    ``report_facts(run_dir, meta, metrics)`` (the report's numbers, figures and texts) and
    ``evaluate(run_dir, options)`` (a saved best model judged again, for ``rnnlab.Run.evaluate``).

    Around it: ``help`` (one line for ``rnnlab --help``), ``objective`` (what a sweep minimizes,
    in words), ``budget_fields`` (one must be set so a run ends), ``sweep_space`` (the default
    search space), ``check_inputs(cfg)`` (read the files every sweep trial reads, once),
    ``demo(quick)`` and ``demo_intro(cfg)`` (the demo's config and its line; ``demo_shows_texts``:
    print the report's texts after it), ``api_data``
    (``data=`` of ``rnnlab.fit``, or None), ``presets`` (named settings), ``onnx`` (the graph's
    inputs and outputs), ``model_methods`` (what ``rnnlab.Model`` offers for this task beyond
    stepping: name -> function(model, *args)), and ``forecaster`` (what rolling-origin backtests need,
    for a task that forecasts).
    """

    name: str
    config_cls: type
    help: str
    objective: str
    budget_fields: tuple
    open_task: Callable
    load_run: Callable
    report_facts: Callable
    evaluate: Callable
    sweep_space: dict
    demo: Callable
    demo_intro: Callable
    onnx: OnnxIO
    check_inputs: Callable = lambda cfg: None
    demo_shows_texts: bool = False  # the demo prints the report's texts after the run (charlm: samples)
    api_data: ApiData | None = None
    presets: dict = field(default_factory=dict)
    model_methods: dict = field(default_factory=dict)
    forecaster: Forecaster | None = None

    @property
    def forecasts(self) -> bool:
        """Whether rolling-origin backtests apply (the task declares a ``Forecaster``)."""
        return self.forecaster is not None


# The search space most tasks start from: a parameter is {low, high[, log][, step]} (ints when
# low and high are ints) or {choices = [...]}.
COMMON_SPACE = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "cell": {"choices": ["rnn", "gru_reset_after", "lstm"]},
    "layers": {"choices": [1, 2]},
}
