"""The fault file: the rules a broker starts with (`trioka serve --faults FILE`, config key
`trioka.faults.file`, `trioka.Broker(faults=[...])`).

The file holds what `POST /controls` takes (controls/endpoint.py): one rule as a JSON object, or
a JSON array of rules, each `{"action": "error", "api": "Produce", ...}` as controls/rules.py
describes. The `rules` of `GET /controls` are such an array too (the counts in it are ignored),
so a chaos run's rules, seeds included, can be saved and given to the next start to replay it.

The rules are in force before the first request is read. A node of a cluster takes the rules
without a `node` and those for its own node.id; a rule for a node that is not there is refused.
A file that cannot be read, is not JSON or holds an invalid rule stops the start with one line
naming the file and the rule at fault (`trioka: fault file F: rule 2: unknown API 'Prodcue'`,
exit status 1, as every configuration error).
"""

from __future__ import annotations

import json

from trioka.controls.rules import Rule


def rules_from_json(data, source: str) -> list[dict]:
    """The rules of a fault file's or a POST's JSON value (a rule or a list of rules), checked;
    ValueError naming `source` and the rule at fault (1-based)."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ValueError(f"{source}: no rules (an empty list)")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{source}: rule {number}: a rule is a JSON object, not "
                             f"{json.dumps(item)[:60]}")
        try:
            Rule.from_dict(item)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: rule {number}: {e}") from None
    return items


def read_fault_file(path: str) -> list[dict]:
    """The rules of a fault file, checked (ValueError naming the file and the rule)."""
    source = f"fault file {path}"
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"{source}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{source}: not JSON: {e}") from None
    return rules_from_json(data, source)


def check_nodes(rules: list[dict], node_ids, source: str) -> None:
    """ValueError for a rule whose `node` is not one of `node_ids` (the nodes that will run)."""
    ids = sorted(node_ids)
    for number, item in enumerate(rules, 1):
        node = Rule.from_dict(item).node
        if node is not None and node not in ids:
            raise ValueError(f"{source}: rule {number}: no node {node} (the node ids are "
                             f"{', '.join(map(str, ids))})")
