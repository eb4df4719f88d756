"""The OpenAPI components, generated from the models in orchestrator.schemas (pydantic's JSON Schema,
spelled as OpenAPI 3.0 reads it); the query parameters of a query model; and the operations each loaded
runbook adds with its typed inputs."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.runbooks.schema import Runbook
from orchestrator.schemas.approvals import ApprovalInbox
from orchestrator.schemas.channels import Channel, ChannelBody, ChannelList
from orchestrator.schemas.common import Error
from orchestrator.schemas.control import ControlState, InputAccepted, InputBody
from orchestrator.schemas.ingest import IngestJob, IngestPatch
from orchestrator.schemas.inputs import inputs_schema
from orchestrator.schemas.jobs import ActionBody, Job, JobBody, JobList, RecordPage
from orchestrator.schemas.runbooks import (
    AuditPage,
    Health,
    HistoryEntry,
    HistoryPage,
    HookCreated,
    HookList,
    IngestFiles,
    RunbookList,
    VersionList,
)
from orchestrator.schemas.runbooks import Runbook as RunbookView
from orchestrator.schemas.schedules import Schedule, ScheduleCreate, ScheduleList, ScheduleUpdate
from orchestrator.schemas.workers import WorkerList

REF = "#/components/schemas/{model}"
CREATE_JOB = "/api/v1/runbooks/{name}/jobs"
REQUESTS: list[type[BaseModel]] = [
    JobBody,
    ActionBody,
    IngestJob,
    IngestPatch,
    ScheduleCreate,
    ScheduleUpdate,
    ChannelBody,
    InputBody,
]
RESPONSES: list[type[BaseModel]] = [
    Error,
    Job,
    JobList,
    RecordPage,
    RunbookView,
    RunbookList,
    VersionList,
    HistoryEntry,
    HistoryPage,
    HookCreated,
    HookList,
    Schedule,
    ScheduleList,
    AuditPage,
    Health,
    IngestFiles,
    WorkerList,
    Channel,
    ChannelList,
    ControlState,
    InputAccepted,
    ApprovalInbox,
]


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def schemas() -> dict[str, Any]:
    """Every request and response model as a component (requests as they are read, answers as written)."""
    wanted = [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES]
    _, found = models_json_schema(wanted, ref_template=REF)  # type: ignore[arg-type]
    return {name: as_30(schema) for name, schema in found.get("$defs", {}).items()}


def parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as query parameters; an empty one (`?limit=`) is one not given."""
    found = []
    for name, schema in model.model_json_schema(ref_template=REF)["properties"].items():
        description = schema.pop("description", "")
        schema.pop("title", None)
        choices = [c for c in schema.pop("anyOf", []) if c.get("type") != "null"]
        if choices:
            schema.update(choices[0] if len(choices) == 1 else {"anyOf": choices})
        if schema.get("default") is None:
            schema.pop("default", None)
        found.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,
                "schema": as_30(schema),
                "description": description,
            }
        )
    return found


def _nullable(out: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` as OpenAPI 3.0 says it: X with `nullable` (an enum lists null too)."""
    choices = out["anyOf"]
    rest = [c for c in choices if c != {"type": "null"}]
    if len(rest) == len(choices):
        return out
    del out["anyOf"]
    if len(rest) == 1 and "$ref" not in rest[0]:
        out.update(rest[0])
    elif len(rest) == 1:
        out["allOf"] = rest
    else:
        out["anyOf"] = rest
    out["nullable"] = True
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def as_30(value: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) in the spelling of OpenAPI 3.0.3."""
    if isinstance(value, list):
        return [as_30(v) for v in value]
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("anyOf"), list):
        value = _nullable(dict(value))
    out = {k: as_30(v) for k, v in value.items()}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    kinds = out.get("type")
    if isinstance(kinds, list):
        rest = [k for k in kinds if k != "null"]
        del out["type"]
        if len(rest) == 1:
            out["type"] = rest[0]
        else:
            out["anyOf"] = [{"type": k} for k in rest]
        if "null" in kinds:
            out["nullable"] = True
    if out.get("type") == "null":
        del out["type"]
        out.update(enum=[None], nullable=True)
    return out


def _needs_inputs(runbook: Runbook) -> bool:
    return any(spec.required and spec.default is None for spec in runbook.inputs.values())


def _job_body(runbook: Runbook) -> dict[str, Any]:
    """The body of POST /api/v1/runbooks/NAME/jobs: JobBody with the runbook's inputs (a draft runs only
    as a preview)."""
    inputs: dict[str, Any] = {"allOf": [ref(f"Inputs.{runbook.name}")], "nullable": True}  # null: none given
    own: dict[str, Any] = {"type": "object", "properties": {"inputs": inputs}}
    if _needs_inputs(runbook):
        own = {"type": "object", "properties": {"inputs": ref(f"Inputs.{runbook.name}")}, "required": ["inputs"]}
    if runbook.status == "draft":
        own["properties"]["preview"] = {"type": "boolean", "enum": [True]}
        own["required"] = [*own.get("required", []), "preview"]
    return {"allOf": [ref("JobBody"), own]}


def per_runbook(paths: dict[str, Any], components: dict[str, Any], runbooks: list[Runbook], records: int) -> None:
    """Each loaded runbook's POST .../jobs with the JSON Schema of its inputs, in place of the templated
    path (which then answers only 404), and its schedules' inputs."""
    if not runbooks:
        return
    template = paths.pop(CREATE_JOB)["post"]
    for runbook in runbooks:
        components[f"Inputs.{runbook.name}"] = as_30(inputs_schema(runbook.inputs, records, title=runbook.name))
        operation = copy.deepcopy(template)
        operation["summary"] = f"Create a job of {runbook.name} (job:run)"
        operation["requestBody"] = {
            "required": _needs_inputs(runbook) or runbook.status == "draft",
            "content": {"application/json": {"schema": _job_body(runbook)}},
        }
        paths[CREATE_JOB.replace("{name}", runbook.name)] = {"post": operation}
    patch = paths["/api/v1/schedules/{schedule_id}"]["patch"]["requestBody"]["content"]["application/json"]
    every = {"allOf": [ref(f"Inputs.{r.name}") for r in runbooks], "nullable": True}
    patch["schema"] = {"allOf": [ref("ScheduleUpdate"), {"type": "object", "properties": {"inputs": every}}]}
    names = sorted(r.name for r in runbooks)
    schedules = paths["/api/v1/schedules"]["post"]["requestBody"]["content"]["application/json"]
    schedules["schema"] = {
        "anyOf": [
            *({"allOf": [ref("ScheduleCreate"), _schedule_of(r)]} for r in runbooks),
            {"allOf": [ref("ScheduleCreate"), {"properties": {"runbook": {"not": {"enum": names}}}}]},
        ]
    }


def _schedule_of(runbook: Runbook) -> dict[str, Any]:
    own = {"runbook": {"type": "string", "enum": [runbook.name]}, "inputs": ref(f"Inputs.{runbook.name}")}
    return {"properties": own, "required": ["inputs"]} if _needs_inputs(runbook) else {"properties": own}
