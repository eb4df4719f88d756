"""Taking the wheel: the inputs a person sends to a waiting job's live browser, and the control state."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, RootModel

from orchestrator.schemas.common import Request, Response

#: Coordinates are CSS pixels of the page's viewport, as the live frames show it.
Coordinate = Annotated[float, Field(ge=0, le=20000)]
#: Keys a person may press: Playwright's key names (with modifiers such as Shift+Tab).
NAMED = "Enter|Tab|Backspace|Delete|Escape|Space|ArrowUp|ArrowDown|ArrowLeft|ArrowRight|Home|End|PageUp|PageDown"
KEY = rf"^((Shift|Control|Alt|Meta)\+){{0,3}}([A-Za-z0-9]|F[0-9]{{1,2}}|{NAMED}|Insert)$"


class Click(Request):
    type: Literal["click"]
    x: Coordinate
    y: Coordinate


class Type(Request):
    type: Literal["type"]
    text: str = Field(min_length=1, max_length=1000, description="typed into the focused field; never recorded")


class Key(Request):
    type: Literal["key"]
    key: str = Field(pattern=KEY, max_length=40, description="a key name such as Enter, Tab, ArrowDown, Shift+Tab")


class Scroll(Request):
    type: Literal["scroll"]
    dx: float = Field(default=0, ge=-20000, le=20000)
    dy: float = Field(default=0, ge=-20000, le=20000)


class InputBody(RootModel[Annotated[Click | Type | Key | Scroll, Field(discriminator="type")]]):
    """One input, in the order sent."""


class ControlState(Response):
    job_id: str
    holder: str = Field(description="who holds control now")
    since: float = Field(description="when they took it (Unix time)")
    inputs: int = Field(description="inputs sent in this control so far")
    idle_expires_in_s: float = Field(description="control is given back after 120 s without input")


class InputAccepted(Response):
    inputs: int
