"""What a metric says a lock is: a bounded label, never the lock's full name.

Lock names carry task arguments (``app.tasks.rebuild:42``), so one label per name would be one
time series per argument value. The label is, in order:

- ``TASKLOCK["METRIC_NAME"](lock name, task name)`` when that setting is set;
- the task name, when the lock's name is the task's (``T``, or ``T:`` and its arguments);
- the name's part before its first ``:`` (a key template's head: ``game:{game_id}`` → ``game``;
  ``report:42`` → ``report``);
- a name without ``:``: the task taking it, if any, else the name whole (a literal).
"""

from __future__ import annotations

from ..conf import conf


def lock_label(name: str, task_name: str | None) -> str:
    """The metric label of lock ``name``, taken in task ``task_name`` (None: no task)."""
    custom = conf.METRIC_NAME
    if custom is not None:
        label = custom(name, task_name)
        if not isinstance(label, str):
            got = type(label).__name__
            raise TypeError(f'TASKLOCK["METRIC_NAME"] must return a str, got {got} for lock {name!r:.100}')
        return label
    if task_name and (name == task_name or name.startswith(task_name + ":")):
        return task_name
    head, colon, _ = name.partition(":")
    if colon:
        return head
    return task_name or name
