"""The graph page's view state in its link: the selected node, pins, named groups, notes.

`view.notes` is free text whose lines `node: text` label that node (its hover and its clerp
in the circuit-tracer export). `view.groups` spells groups as `name=node|node;other=node`
(node ids never hold `|`, `;` or `=`; a name's `;` and `=` are replaced); `view.pinned` is a
comma list of node ids.
"""
from __future__ import annotations


def parse_groups(text: str) -> dict[str, list[str]]:
    """`names=1.5@3|0.2@1;other=…` -> {"names": ["1.5@3", "0.2@1"], …} (blank parts skipped)."""
    groups = {}
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        name, _, members = part.partition("=")
        nodes = [m.strip() for m in members.split("|") if m.strip()]
        if name.strip() and nodes:
            groups[name.strip()] = nodes
    return groups


def format_groups(groups: dict[str, list[str]]) -> str:
    return ";".join(f"{name.replace(';', ',').replace('=', '-')}={'|'.join(nodes)}"
                    for name, nodes in groups.items())


def parse_pins(text: str) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def node_labels(notes: str, nodes) -> dict[str, str]:
    """Lines of the notes that start with a node id and a colon (`0.455@14: S2 via L0H0`) as
    that node's label; other lines are free notes."""
    known = set(nodes)
    labels = {}
    for line in (notes or "").splitlines():
        node, sep, text = line.partition(":")
        if sep and node.strip() in known and text.strip():
            labels[node.strip()] = text.strip()
    return labels
