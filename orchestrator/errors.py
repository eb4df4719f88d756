"""One error base class; each subclass's docstring is its default message."""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Something went wrong in the orchestrator."""

    status_code = 400

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class NotFound(OrchestratorError):
    """The thing asked for does not exist."""

    status_code = 404


class JobNotFound(NotFound):
    """No job has this id."""


class RunbookNotFound(NotFound):
    """No runbook has this name."""


class ArtifactNotFound(NotFound):
    """This job has no artifact with this id."""


class ScheduleNotFound(NotFound):
    """No schedule has this id."""


class NotSignedIn(OrchestratorError):
    """Sign in, or send an API token as `Authorization: Bearer TOKEN`."""

    status_code = 401


class Forbidden(OrchestratorError):
    """Your role does not allow this."""

    status_code = 403


class TooManyRequests(OrchestratorError):
    """Too many requests; try again later."""

    status_code = 429


class BodyTooLarge(OrchestratorError):
    """The request body is too large."""

    status_code = 413


class InvalidInput(OrchestratorError):
    """The inputs do not match the runbook's inputs; see fields."""

    status_code = 422

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(message or f"Invalid input in {names}.", fields=fields)
        self.fields = fields


class RunbookError(OrchestratorError):
    """The runbook file is not valid."""

    status_code = 422


class InvalidTransition(OrchestratorError):
    """This action is not allowed in the job's current status."""

    status_code = 409


class Duplicate(OrchestratorError):
    """A job with the same inputs is already queued or running."""

    status_code = 409


class Conflict(OrchestratorError):
    """This cannot be changed here."""

    status_code = 409


class StepError(OrchestratorError):
    """The step failed."""


class ApprovalRefused(StepError):
    """The approval was rejected: the job ends here, whatever continue_on_error or stop_on_error say."""


class StepTimeout(StepError):
    """The step did not finish in time."""


class TemplateError(StepError):
    """A template in the step could not be rendered."""
