"""A runbook's source as people read it: secret values masked in every YAML style, every line where it was."""

from __future__ import annotations

import textwrap

import yaml

from orchestrator.runbooks.loader import parse
from orchestrator.runbooks.redaction import MASK, masked_source

SOURCE = textwrap.dedent("""
    name: secrets
    inputs:
      plain:
        type: string
        secret: true
        default: plain-secret-1
      quoted: {type: string, secret: true, default: "quoted secret 2"}
      single: {type: string, secret: yes, default: 'single secret 3'}
      flow_multiline: {type: string, secret: true, default: "flow secret 4
        continued 4"}
      block:
        secret: true
        type: string
        default: |
          block secret 5
          block secret 5b
      folded:
        secret: "true"
        default: >-
          folded secret 6
      anchored: {type: string, secret: true, default: &pin !!str 7777}
      records: {type: records, secret: true, default: [{id: record-secret-8}]}
      visible: {type: string, default: shown-default}
      not_secret: {type: string, secret: false, default: also-shown}
    schedule:
      cron: "0 6 * * *"
      inputs: {plain: schedule-secret-9, anchored: *pin, visible: shown-input}
    steps:
      - {id: greet, action: set, values: {greeting: "hello"}}
""").lstrip()

SECRETS = [
    "plain-secret-1",
    "quoted secret 2",
    "single secret 3",
    "flow secret 4",
    "continued 4",
    "block secret 5",
    "block secret 5b",
    "folded secret 6",
    "7777",
    "record-secret-8",
    "schedule-secret-9",
]


def test_the_source_is_a_valid_runbook_with_secrets_in_every_style() -> None:
    runbook = parse(SOURCE, "secrets.yaml", expected_name="secrets")
    assert runbook.inputs["block"].default == "block secret 5\nblock secret 5b\n"
    assert runbook.inputs["anchored"].default == "7777"
    assert runbook.schedule and runbook.schedule.inputs["anchored"] == "7777"
    for secret in SECRETS:
        assert secret in SOURCE


def test_every_secret_value_is_masked_and_nothing_else() -> None:
    masked = masked_source(SOURCE)
    for secret in SECRETS:
        assert secret not in masked, secret
    for shown in ("shown-default", "also-shown", "shown-input", 'cron: "0 6 * * *"', "greeting"):
        assert shown in masked, shown


def test_every_line_keeps_its_number() -> None:
    original, masked = SOURCE.splitlines(), masked_source(SOURCE).splitlines()
    assert len(masked) == len(original)
    changed = [i + 1 for i, (a, b) in enumerate(zip(original, masked, strict=True)) if a != b]
    # the lines of the masked values, and nothing else
    assert [original[n - 1].split(":")[0].strip() for n in changed] == [
        "default",
        "quoted",
        "single",
        "flow_multiline",
        'continued 4"}',
        "default",
        "block secret 5",
        "block secret 5b",
        "default",
        "folded secret 6",
        "anchored",
        "records",
        "inputs",
    ]
    for number, line in enumerate(masked, start=1):
        if number not in changed:
            assert line == original[number - 1]


def test_the_masked_source_still_reads_as_the_same_document_with_masks() -> None:
    masked = yaml.safe_load(masked_source(SOURCE))
    original = yaml.safe_load(SOURCE)
    secret = {name for name, spec in original["inputs"].items() if spec.get("secret") in (True, "true")}
    for name, spec in masked["inputs"].items():
        assert spec["default"] == (MASK if name in secret else original["inputs"][name]["default"])
    assert masked["schedule"]["inputs"] == {"plain": MASK, "anchored": MASK, "visible": "shown-input"}
    assert masked["steps"] == original["steps"]


def test_a_source_without_secrets_is_unchanged() -> None:
    source = "name: open\ninputs:\n  who: {type: string, default: world}\nsteps:\n  - {action: sleep, seconds: 0}\n"
    assert masked_source(source) == source


def test_block_collections_and_tags_are_masked_and_the_next_key_keeps_its_indentation() -> None:
    source = textwrap.dedent("""
        name: blocks
        inputs:
          listed:
            type: records
            secret: true
            default: &rows !!seq
              - {id: row-secret-1}
              - {id: row-secret-2}   # a comment row-secret-3
          number: {type: integer, secret: true, default: !!int 424242}
          mapped:
            secret: true
            default:
              key: mapped-secret-4
        schedule:
          cron: "0 6 * * *"
          inputs:
            listed: *rows
        steps:
          - {action: sleep, seconds: 0}
    """).lstrip()
    masked = masked_source(source)
    for secret in ("row-secret", "424242", "mapped-secret"):
        assert secret not in masked, secret
    assert len(masked.splitlines()) == len(source.splitlines())
    assert '\n  number: {type: integer, secret: true, default: "********"}\n' in masked
    assert '\n    default: &rows "********"\n' in masked and "\n    listed: *rows\n" in masked
    document = yaml.safe_load(masked)
    assert {name: spec["default"] for name, spec in document["inputs"].items()} == dict.fromkeys(
        document["inputs"], MASK
    )
    assert document["schedule"]["inputs"] == {"listed": MASK}
