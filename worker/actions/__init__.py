"""The action registry: each action is one function whose `step` parameter names its field model."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, get_type_hints

from orchestrator.runbooks.steps import StepBase
from worker.context import StepContext

ActionFn = Callable[[StepContext, Any], Awaitable[dict[str, Any] | None]]


class Registry:
    def __init__(self, functions: Iterable[ActionFn]) -> None:
        self._actions: dict[str, tuple[type[StepBase], ActionFn]] = {}
        for fn in functions:
            model = get_type_hints(fn)["step"]
            name = inspect.get_annotations(model, eval_str=True)["action"].__args__[0]
            self._actions[name] = (model, fn)

    def __contains__(self, action: str) -> bool:
        return action in self._actions

    def get(self, action: str) -> tuple[type[StepBase], ActionFn]:
        return self._actions[action]

    @property
    def names(self) -> list[str]:
        return sorted(self._actions)


def default_registry() -> Registry:
    from worker.actions import data, flow, forms, navigation, page

    return Registry([*navigation.ACTIONS, *forms.ACTIONS, *page.ACTIONS, *data.ACTIONS, *flow.ACTIONS])
