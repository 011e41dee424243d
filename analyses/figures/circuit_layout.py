"""Where the circuit graph puts its nodes, their input ports and its edges (data coordinates,
no plotly): a pure geometry the figure draws and the tests measure.

Layers run bottom to top: the embedding below layer 0, the logits above the last layer,
both centred on the drawing. Heads sit along their layer's row; a layer's MLP sits to their
right, half a layer up (it reads after the layer's heads have written, so a head → its own MLP
edge runs upward like every other). An edge leaves the top of its sender and ends at a port
on the bottom of its receiver: a head has three, q, k and v (left to right); an MLP and the
logits have one.

Edges are quadratic Bézier curves. Of a fixed set of bends (the control point moved off the
straight line, either side, by a growing amount), each edge takes the cheapest: crossing a
node of the circuit costs most, passing a node outside it (a faint dot) less, running along
an edge already placed or doubling back below the sender or above the port a little, bending
a little (routing by candidate search; no layout library is needed for a grid this regular).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HALF_W, HALF_H = 0.34, 0.2  # a node's box, around its centre (a head column is 1 wide, a row 1 high)
DOT_HALF = 0.06  # a node outside the circuit: a dot
WIDE_HALF_W = 0.7  # the embedding's and the logits' boxes
PORT_DX = 0.2  # q, k and v sit this far apart along a head's bottom edge
MLP_GAP = 0.6  # the MLP column's distance from the last head column
LAYER_PITCH = 1.6  # from one layer's heads to the next's: the MLP row between gives curves room
MLP_RISE = 0.8  # an MLP sits this far above its layer's heads
SAMPLES = 33  # points along each curve (the drawn line and the crossing test)
BENDS = (0.0, 0.35, 0.7, 1.0, 1.4, 1.9, 2.5, 3.2)  # control point offsets tried, each side
MARGIN = 0.08  # clearance kept around a box
COST_CIRCUIT_NODE, COST_OTHER_NODE, COST_CROWDING, COST_BEND = 100.0, 8.0, 2.0, 0.3
COST_BACKTRACK = 20.0  # per row a curve dips below its sender or rises above its port
CROWDED = 0.07  # two curves' points closer than this run along each other


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    half_w: float = HALF_W
    half_h: float = HALF_H

    def contains(self, xs: np.ndarray, ys: np.ndarray, margin: float = MARGIN) -> np.ndarray:
        return (np.abs(xs - self.x) < self.half_w + margin) & (np.abs(ys - self.y) < self.half_h + margin)


def dot(box: Box) -> Box:
    """A node outside the circuit is drawn as a faint dot: only that is in the way."""
    return Box(box.x, box.y, DOT_HALF, DOT_HALF)


def layer_y(layer: int) -> float:
    """The height of a layer's heads (the logits: one layer past the last)."""
    return LAYER_PITCH * layer


def mlp_column(n_heads: int) -> float:
    return n_heads - 1 + MLP_GAP


def node_boxes(n_layers: int, n_heads: int) -> dict[str, Box]:
    """Every node's box: heads `L{l}H{h}`, MLPs `L{l}.mlp`, `embed` and `logits`."""
    centre = mlp_column(n_heads) / 2  # the middle of the drawing, heads and MLPs together
    boxes = {"embed": Box(centre, -1.0, WIDE_HALF_W), "logits": Box(centre, layer_y(n_layers), WIDE_HALF_W)}
    for layer in range(n_layers):
        boxes.update({f"L{layer}H{h}": Box(float(h), layer_y(layer)) for h in range(n_heads)})
        boxes[f"L{layer}.mlp"] = Box(mlp_column(n_heads), layer_y(layer) + MLP_RISE)
    return boxes


def port(box: Box, receiver_input: str) -> tuple[float, float]:
    """Where an edge into `receiver_input` (q, k, v; "in" or "" for one-port nodes) ends."""
    dx = {"q": -PORT_DX, "k": 0.0, "v": PORT_DX}.get(receiver_input, 0.0)
    return box.x + dx, box.y - box.half_h


def outlet(box: Box) -> tuple[float, float]:
    return box.x, box.y + box.half_h


def bezier(start, control, end, n: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Points [n] along the quadratic Bézier curve start → end pulled toward `control`."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    points = (1 - t) ** 2 * np.asarray(start) + 2 * (1 - t) * t * np.asarray(control) + t ** 2 * np.asarray(end)
    return points[:, 0], points[:, 1]


def controls(start, end) -> list[tuple[float, tuple[float, float]]]:
    """(bend, control point) candidates: the chord's midpoint moved along its normal, either side."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    length = float(np.hypot(dx, dy)) or 1.0
    nx, ny = -dy / length, dx / length
    mid = ((x0 + x1) / 2, (y0 + y1) / 2)
    found = []
    for bend in BENDS:
        for side in ((1.0,) if bend == 0 else (1.0, -1.0)):
            found.append((bend, (mid[0] + side * bend * nx, mid[1] + side * bend * ny)))
    return found


@dataclass(frozen=True)
class Route:
    xs: np.ndarray  # [SAMPLES] the curve's points, sender to port
    ys: np.ndarray
    control: tuple[float, float]


def route_edges(ends: list[tuple[str, str, tuple[float, float], tuple[float, float]]],
                boxes: dict[str, Box], in_circuit: set[str]) -> list[Route]:
    """One curve per (sender, receiver, start, end), placed in order (the strongest edges first
    get the straightest routes), each avoiding the other nodes' boxes where a bend can."""
    names = list(boxes)
    drawn = [boxes[n] if n in in_circuit else dot(boxes[n]) for n in names]
    centre = np.array([(b.x, b.y) for b in drawn])  # [node, 2]
    half = np.array([(b.half_w + MARGIN, b.half_h + MARGIN) for b in drawn])
    weight = np.array([COST_CIRCUIT_NODE if n in in_circuit else COST_OTHER_NODE for n in names])
    occupied: set[tuple[int, int]] = set()  # grid cells (CROWDED wide) that placed curves run through
    inner = slice(SAMPLES // 5, SAMPLES - SAMPLES // 5)  # the middle of a curve, away from its shared ends
    routes = []
    for sender, receiver, start, end in ends:
        candidates = controls(start, end)
        curves = np.stack([np.stack(bezier(start, control, end)) for _, control in candidates])  # [cand, 2, sample]
        xs, ys = curves[:, 0], curves[:, 1]
        inside = ((np.abs(xs[:, :, None] - centre[:, 0]) < half[:, 0])
                  & (np.abs(ys[:, :, None] - centre[:, 1]) < half[:, 1]))  # [cand, sample, node]
        own = np.array([n in (sender, receiver) for n in names])
        cost = (inside[:, :, ~own].sum(1) * weight[~own]).sum(1)
        # its own ends' boxes too, away from the outlet and the port: no curve runs through
        # its receiver to reach a port from above, or along the ports it does not enter
        ends_inside = ((np.abs(xs[:, 3:-3, None] - centre[own, 0]) < half[own, 0] - MARGIN / 2)
                       & (np.abs(ys[:, 3:-3, None] - centre[own, 1]) < half[own, 1] - MARGIN / 2))
        cost = cost + COST_CIRCUIT_NODE * ends_inside.sum((1, 2))
        cost = cost + COST_BEND * np.array([bend for bend, _ in candidates])
        cost = cost + COST_BACKTRACK * (np.maximum(0.0, start[1] - ys.min(1)) + np.maximum(0.0, ys.max(1) - end[1]))
        if occupied:
            cells = np.floor(curves[:, :, inner] / CROWDED).astype(int)
            near = [np.mean([(a, b) in occupied for a, b in zip(*cells[c])]) for c in range(len(candidates))]
            cost = cost + COST_CROWDING * np.array(near)
        best = int(np.argmin(cost))  # the first of equal costs: the least bent
        routes.append(Route(xs[best], ys[best], candidates[best][1]))
        occupied.update(zip(*np.floor(curves[best] / CROWDED).astype(int)))
    return routes


def crossings(route: Route, boxes: dict[str, Box], own: tuple[str, str]) -> list[str]:
    """The nodes other than `own` (sender, receiver) whose boxes the curve passes through."""
    return [name for name, box in boxes.items()
            if name not in own and box.contains(route.xs, route.ys, margin=0.0).any()]
