"""Parse-time checks of mapped tasks: Airflow calls a mapped task's ``__init__`` only when the task runs
(``MappedOperator.unmap``), so ``partial()`` of the provider's operators and sensor returns Airflow's
``OperatorPartial`` as a :class:`_CheckedOperatorPartial`, whose ``expand()`` and ``expand_kwargs()`` run the
class's ``_check_arguments(task_id, values, where)`` on the arguments each mapped task will get, as far as the DAG
file states them; :data:`MAPPED` stands for what only the run will know.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.mappedoperator import OperatorPartial  # loaded with BaseOperator: no import cost

if TYPE_CHECKING:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from airflow_imagebuilder import diagnostics, retry
else:  # loaded on first use (see lazy.py)
    from airflow_imagebuilder.lazy import diagnostics, retry


class _Mapped:
    """An argument a mapped task takes from a value known only when it runs (an XComArg, or any argument of an
    ``expand_kwargs()`` over an XComArg).  It has ``resolve``, so :func:`~airflow_imagebuilder.operators.is_literal` is
    False for it."""

    __slots__ = ()

    def resolve(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - only marks the value as unknown
        raise NotImplementedError

    def __repr__(self) -> str:
        return "<mapped>"


#: Stands in for a mapped argument whose values are known only when the task runs (see :class:`_Mapped`).
MAPPED: Any = _Mapped()


def _unknown_if_resolvable(value: Any) -> Any:
    return MAPPED if hasattr(value, "resolve") else value


def _expand_candidates(mapped_kwargs: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(where, mapped arguments) to check for ``expand(**mapped_kwargs)``: every mapped argument unknown, then each
    element of a literal list in its place (the others unknown)."""
    unknown = dict.fromkeys(mapped_kwargs, MAPPED)
    yield "", unknown
    for name, values in mapped_kwargs.items():
        if isinstance(values, (list, tuple)):
            for index, value in enumerate(values):
                yield f" ({name}[{index}] of expand())", {**unknown, name: _unknown_if_resolvable(value)}


def _expand_kwargs_candidates(kwargs: Any) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(where, mapped arguments) to check for ``expand_kwargs(kwargs)``: each literal dict of a literal list; None
    (every argument not given to ``partial()`` unknown) for an XComArg."""
    if not isinstance(kwargs, (list, tuple)):
        yield "", None
        return
    for index, item in enumerate(kwargs):
        where = f" (item {index} of expand_kwargs())"
        if isinstance(item, Mapping):
            yield where, {name: _unknown_if_resolvable(value) for name, value in item.items()}
        else:
            yield where, None


class _CheckedOperatorPartial(OperatorPartial):
    """What ``partial()`` of the provider's operators and sensor returns: Airflow's, whose ``expand()`` and
    ``expand_kwargs()`` then check the arguments of the tasks they map, as far as the DAG file states them (Airflow
    calls a mapped task's ``__init__`` only when the task runs)."""

    __slots__ = ()

    def expand(self, **mapped_kwargs: Any) -> MappedOperator:
        mapped = super().expand(**mapped_kwargs)
        check_mapped(self.operator_class, self.kwargs, _expand_candidates(mapped_kwargs))
        return mapped

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> MappedOperator:
        mapped = super().expand_kwargs(kwargs, strict=strict)
        check_mapped(self.operator_class, self.kwargs, _expand_kwargs_candidates(kwargs))
        return mapped


def check_shared_arguments(task_id: str, values: Mapping[str, Any], where: str = "") -> None:
    """The checks the operators and the sensor share, of the arguments known so far (not :data:`MAPPED`):
    ``api_retry`` and ``max_finding_severity``.  ``where`` follows the task id in messages."""
    api_retry = values["api_retry"]
    if api_retry is not None and api_retry is not MAPPED:
        try:
            retry.RetryPolicy.from_value(api_retry)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{task_id}{where}: {error}") from None
    max_finding_severity = values["max_finding_severity"]
    if max_finding_severity is not None and max_finding_severity is not MAPPED:
        diagnostics.check_gate_severity(max_finding_severity, task_id + where)


def checked_partial(cls: Any, partial: OperatorPartial, own_inits: tuple[Callable[..., None], ...]) -> OperatorPartial:
    """``partial`` (what Airflow's ``partial()`` returned for ``cls``), checking its mapped tasks when it expands.

    Only for the provider's own ``__init__`` signatures (``own_inits``): a subclass with an ``__init__`` of its own
    may take its arguments otherwise (through ``**kwargs``, or values it sets itself), which only it can check,
    when the task runs.
    """
    if cls.__init__ in own_inits and type(partial) is OperatorPartial:  # as in Airflow 3.1 to 3.3
        partial.__class__ = _CheckedOperatorPartial  # a subclass without slots of its own: the same object
    return partial


def check_mapped(
    cls: Any, partial_kwargs: Mapping[str, Any], candidates: Iterator[tuple[str, dict[str, Any] | None]]
) -> None:
    """Run ``cls._check_arguments`` on the arguments mapped tasks will get, for each candidate of an expansion:
    (where, the mapped arguments, or None when any argument not given to ``partial()`` may be mapped).

    Each argument comes from where Airflow takes it when it creates a mapped task (``MappedOperator.unmap``
    calls ``__init__``): the expansion, ``partial()``, the DAG's and task group's ``default_args``, then the
    default of ``__init__``.
    """
    dag, group = partial_kwargs.get("dag"), partial_kwargs.get("task_group")
    default_args: dict[str, Any] = {}
    if dag is not None:
        default_args.update(dag.default_args or {})
        if group is not None:
            default_args.update(group.default_args or {})
    parameters = [
        parameter
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind is parameter.KEYWORD_ONLY
    ]
    task_id = partial_kwargs["task_id"]
    for where, mapped in candidates:
        values: dict[str, Any] = {}
        for parameter in parameters:
            name = parameter.name
            if mapped is not None and name in mapped:
                values[name] = mapped[name]
            elif name in partial_kwargs:
                values[name] = partial_kwargs[name]
            elif mapped is None:
                values[name] = MAPPED
            elif name in default_args:
                values[name] = default_args[name]
            elif parameter.default is not parameter.empty:
                values[name] = parameter.default
            else:  # what __init__ would raise when the task runs
                raise TypeError(f"{cls.__name__}.partial(): missing keyword argument {name!r} ({task_id})")
        cls._check_arguments(task_id, values, where)
