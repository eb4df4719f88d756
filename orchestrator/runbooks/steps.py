"""One pydantic model per runbook action: the fields a step of that action accepts.

A field may hold a template wherever it holds a value: at load time a template string is
accepted in place of any type, and at run time the rendered value is validated again.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from orchestrator import templating
from orchestrator.approvers import check_entry, check_required


def _template_only(value: str) -> str:
    if not templating.is_template(value):
        raise ValueError("expected a value of the field's type or a {{ template }}")
    return value


Tpl = Annotated[str, AfterValidator(_template_only)]
Seconds = Annotated[float, Field(gt=0)] | Tpl
Count = Annotated[int, Field(ge=0, le=20)] | Tpl
Selector = str | list[str]


class StepBase(BaseModel):
    """Fields every step accepts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: Whether the action needs the job's browser page.
    browser: ClassVar[bool] = True
    #: Whether the step only changes the page it is on (re-applied when a resumed job restores that page).
    page_local: ClassVar[bool] = False
    #: Whether the step waits for a person (no step time limit, no retries, no worker slot held).
    waits_for_person: ClassVar[bool] = False
    #: Whether the step has no time limit and no retries of its own (a loop, a child job).
    untimed: ClassVar[bool] = False
    #: Fields the executor renders itself, later (not before the step runs).
    lazy: ClassVar[frozenset[str]] = frozenset()

    action: str
    id: str = Field(default="", pattern=r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    name: str | None = None
    timeout: Seconds | None = None
    retries: Count | None = None
    continue_on_error: bool = False
    when: str | bool | None = None
    screenshot: Literal["after", "before", "never"] = "after"

    #: Whether no field holds a template (then the step is already what it renders to); worked out once.
    _static: bool | None = PrivateAttr(default=None)

    @property
    def title(self) -> str:
        return self.name or self.id

    def is_static(self) -> bool:
        # Asked for every step of every job: read the private value from its dict, as `self._static`
        # goes through pydantic's __getattr__ (microseconds each time).
        private = self.__pydantic_private__ or {}
        static = private.get("_static")
        if static is None:
            static = self._static = not _has_template(self.model_dump(by_alias=True, exclude={"when", *self.lazy}))
        return bool(static)


class Goto(StepBase):
    action: Literal["goto"]
    url: str
    wait_until: Literal["load", "domcontentloaded", "networkidle", "commit"] = "load"


class Click(StepBase):
    action: Literal["click"]
    selector: Selector


class Fill(StepBase):
    action: Literal["fill"]
    page_local: ClassVar[bool] = True
    selector: Selector
    value: str | int | float


class Press(StepBase):
    action: Literal["press"]
    selector: Selector
    key: str


class Select(StepBase):
    action: Literal["select"]
    page_local: ClassVar[bool] = True
    selector: Selector
    value: str | list[str]


class Check(StepBase):
    action: Literal["check"]
    page_local: ClassVar[bool] = True
    selector: Selector


class Uncheck(StepBase):
    action: Literal["uncheck"]
    page_local: ClassVar[bool] = True
    selector: Selector


class WaitFor(StepBase):
    action: Literal["wait_for"]
    selector: Selector | None = None
    url: str | None = None
    state: Literal["attached", "detached", "visible", "hidden"] = "visible"

    @model_validator(mode="after")
    def _needs_target(self) -> WaitFor:
        if self.selector is None and self.url is None:
            raise ValueError("wait_for needs a selector, a url, or both")
        return self


class Extract(StepBase):
    action: Literal["extract"]
    selector: Selector
    save_as: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    attribute: str | None = None
    all: bool = False
    table: bool = False


class Assert(StepBase):
    action: Literal["assert"]
    selector: Selector | None = None
    text: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _needs_condition(self) -> Assert:
        if self.selector is None and self.text is None and self.url is None:
            raise ValueError("assert needs a selector, a text or a url")
        return self


class Screenshot(StepBase):
    action: Literal["screenshot"]
    screenshot: Literal["after", "before", "never"] = "never"
    full_page: bool = False
    name: str | None = None


class Approval(StepBase):
    action: Literal["approval"]
    browser: ClassVar[bool] = False
    waits_for_person: ClassVar[bool] = True
    message: str
    timeout: Seconds | None = None
    on_timeout: Literal["reject", "approve"] = "reject"
    #: Who may decide: `user:NAME` / `role:NAME` entries (orchestrator/approvers.py); anyone with
    #: job:approve when not given. Fixed in the runbook: never a template.
    approvers: Annotated[list[Annotated[str, AfterValidator(check_entry)]], Field(min_length=1)] | None = None
    #: Distinct people who must approve; any one reject rejects.
    required: Annotated[int, Field(ge=1, le=100)] = 1
    #: Seconds between `approval_reminder` notifications while nobody decided.
    remind_every: Seconds | None = None

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approval:
        check_required(self.approvers, self.required)
        return self


class HandoffUntil(BaseModel):
    """When a handoff is done by itself: the page shows `selector` (visible), and/or its URL matches
    `url` (a glob, as Playwright's `wait_for_url` takes it)."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _needs_one(self) -> HandoffUntil:
        if self.selector is None and self.url is None:
            raise ValueError("until needs a selector, a url, or both")
        return self


class Handoff(StepBase):
    """A person finishes something in the live browser (a one-time code, a CAPTCHA): the job is paused
    with `message` as its reason until `until` holds on the page or someone presses Resume."""

    action: Literal["handoff"]
    waits_for_person: ClassVar[bool] = True
    message: str
    timeout: Seconds | None = 900.0
    until: HandoffUntil | None = None


class Export(StepBase):
    action: Literal["export"]
    browser: ClassVar[bool] = False
    screenshot: Literal["after", "before", "never"] = "never"
    format: Literal["csv", "json"]
    data: Any
    filename: str


class Download(StepBase):
    action: Literal["download"]
    selector: Selector
    save_as: str | None = None


class Upload(StepBase):
    action: Literal["upload"]
    selector: Selector
    file: Any


class RunRunbook(StepBase):
    action: Literal["run_runbook"]
    browser: ClassVar[bool] = False
    untimed: ClassVar[bool] = True
    screenshot: Literal["after", "before", "never"] = "never"
    runbook: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    save_as: str | None = None


class SetValues(StepBase):
    action: Literal["set"]
    browser: ClassVar[bool] = False
    screenshot: Literal["after", "before", "never"] = "never"
    values: dict[str, Any]


class Sleep(StepBase):
    action: Literal["sleep"]
    browser: ClassVar[bool] = False
    screenshot: Literal["after", "before", "never"] = "never"
    seconds: Annotated[float, Field(ge=0, le=86400)] | Tpl


class ForEach(StepBase):
    action: Literal["for_each"]
    browser: ClassVar[bool] = False
    lazy: ClassVar[frozenset[str]] = frozenset({"steps", "record_id", "record_name"})
    screenshot: Literal["after", "before", "never"] = "never"
    items: Any
    as_: str = Field(default="record", alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    record_id: str
    record_name: str | None = None
    stop_on_error: bool = False
    steps: list[Step] = Field(min_length=1)


Step = Annotated[
    Goto
    | Click
    | Fill
    | Press
    | Select
    | Check
    | Uncheck
    | WaitFor
    | Extract
    | Assert
    | Screenshot
    | Approval
    | Handoff
    | Export
    | Download
    | Upload
    | RunRunbook
    | SetValues
    | Sleep
    | ForEach,
    Field(discriminator="action"),
]

ForEach.model_rebuild()

#: The fields of StepBase, never rendered as action arguments.
BASE_FIELDS = frozenset(StepBase.model_fields) - {"action"}


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return templating.is_template(value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_template(v) for v in value)
    return False
