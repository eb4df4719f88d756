"""A runbook's source as people may read it: the values of secret inputs masked, every line where it was."""

from __future__ import annotations

import re
from functools import lru_cache

import yaml

from orchestrator.runbooks.loader import compose

MASK = "********"
HIDDEN = "# This version's source is not shown: it does not read as YAML, so its secrets cannot be masked.\n"
_FALSE = {"false", "no", "off", "0", "n", "f", ""}
_PROPERTIES = re.compile(r"(?:[&!][^\s]*\s+)*")  # the anchor and tag before a value


@lru_cache(maxsize=256)
def masked_source(source: str) -> str:
    """The source with the default of every `secret: true` input, and every value its schedule gives a
    secret input, replaced by "********" in any YAML style (plain, quoted, flow, block scalar); a value
    over several lines leaves them empty, so every other line keeps its number."""
    try:
        root = compose(source)
    except Exception:  # fail closed: what cannot be read cannot be masked, so none of it is shown
        return HIDDEN
    spans = sorted({(node.start_mark.index, node.end_mark.index) for node in secret_values(root)})
    parts, done = [], 0
    for start, end in spans:
        if start < done:
            continue  # inside a value masked already
        parts += [source[done:start], _mask(source[start:end])]
        done = end
    return "".join([*parts, source[done:]])


def secret_values(root: yaml.Node | None) -> list[yaml.Node]:
    """The nodes of secret values: secret inputs' defaults and the schedule's inputs for them."""
    found, names = [], set()
    for key, spec in _items(_get(root, "inputs")):
        if _is_secret(spec):
            names.add(str(key.value))
            found += [node for node in [_get(spec, "default")] if node is not None]
    found += [value for key, value in _items(_get(_get(root, "schedule"), "inputs")) if str(key.value) in names]
    return found


def _mask(text: str) -> str:
    """The masked value on the value's first line, then its other lines empty; its anchor is kept so the
    aliases of it still read, its tag is not (a string no longer is what `!!seq` or `!!int` says)."""
    value = text.rstrip()  # a block value's span runs on to the next key's indentation: keep that
    found = _PROPERTIES.match(value)
    kept = "".join(f"{part} " for part in found.group(0).split() if part.startswith("&")) if found else ""
    return f'{kept}"{MASK}"' + "\n" * value.count("\n") + text[len(value) :]


def _items(node: yaml.Node | None) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    return next((value for name, value in _items(node) if name.value == key), None)


def _is_secret(spec: yaml.Node) -> bool:
    """Whether an input spec says `secret:` with any value but a plain false (when unsure: secret)."""
    flag = _get(spec, "secret")
    if flag is None:
        return False
    return not (isinstance(flag, yaml.ScalarNode) and str(flag.value).strip().lower() in _FALSE)
