"""Random small models for fuzzing the Pruner: a program of channel operations, run as a module.

A program is a tuple of operations on a growing list of values (tensors), value 0 being the input
``[N, 3, 8, 8]``. Each operation reads earlier values by index and appends its results:

* feature maps ``[N, C, 8, 8]``: ``("conv", v, out, k)``, ``("dw", v)`` (depth-wise 3x3),
  ``("gconv", v, groups, out)``, ``("bn", v)``, ``("relu", v)``, ``("pool", v)`` and
  ``("flatten", v)`` (to a vector);
* vectors ``[N, F]``: ``("linear", v, out)``, ``("bn", v)``, ``("relu", v)``;
* both: ``("cat", v, w)``, ``("add", v, w)`` (equal widths), ``("slice", v, a, b)``
  (``x[:, a:b]``), ``("split", v, size)`` (``torch.split``, one value per piece) and
  ``("chunk", v, n)`` (``torch.chunk``, one value per chunk).

Every value nothing reads (but the input) goes to the head: pooled (or flattened, as the
program's ``flatten_head`` says), concatenated and fed to one ``Linear(..., 3)``. Programs are
plain tuples, so a failing one can be pinned as a hypothesis ``@example``, and
:func:`source` prints it as the ``forward()`` it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

#: the example input's shape
SHAPE = (2, 3, 8, 8)
#: the widest value a program makes (a cat of wide values is not generated beyond it)
MAX_WIDTH = 16
MAP, VEC = "map", "vec"


@dataclass(frozen=True)
class Program:
    ops: tuple[tuple, ...]
    #: which head inputs (by position among the unread values) are flattened, not pooled
    flatten_head: tuple[bool, ...] = ()


def widths(ops: tuple[tuple, ...]) -> list[tuple[str, int]]:
    """(kind, channels) of every value the operations make, the input first."""
    values = [(MAP, SHAPE[1])]
    for op in ops:
        name, v = op[0], op[1]
        kind, c = values[v]
        if name == "conv":
            values.append((MAP, op[2]))
        elif name == "gconv":
            values.append((MAP, op[3]))
        elif name in ("dw", "bn", "relu"):
            values.append((kind, c))
        elif name == "pool":
            values.append((VEC, c))
        elif name == "flatten":
            values.append((VEC, c * SHAPE[2] * SHAPE[3]))
        elif name == "linear":
            values.append((VEC, op[2]))
        elif name == "cat":
            values.append((kind, c + values[op[2]][1]))
        elif name == "add":
            values.append((kind, c))
        elif name == "slice":
            values.append((kind, op[3] - op[2]))
        elif name == "split":
            values += [(kind, len(part)) for part in torch.arange(c).split(op[2])]
        elif name == "chunk":
            values += [(kind, len(part)) for part in torch.arange(c).chunk(op[2])]
        else:
            raise ValueError(f"unknown operation {op!r}")
    return values


def unread(ops: tuple[tuple, ...]) -> list[int]:
    """The values no operation reads (the input excepted): the head's inputs."""
    read = {v for op in ops for v in _sources(op)}
    return [v for v in range(1, len(widths(ops))) if v not in read]


def _sources(op: tuple) -> tuple[int, ...]:
    return (op[1], op[2]) if op[0] in ("cat", "add") else (op[1],)


class GraphNet(nn.Module):
    """The model a :class:`Program` describes; layer ``nK`` belongs to operation ``K``."""

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        values = widths(program.ops)
        self.layers = nn.ModuleDict()
        for i, op in enumerate(program.ops):
            layer = _layer(op, values[op[1]])
            if layer is not None:
                self.layers[f"n{i}"] = layer
        self.heads = unread(program.ops)
        features = sum(self._head_width(v, values[v]) for v in self.heads)
        self.head = nn.Linear(features, 3)

    def _head_width(self, v: int, value: tuple[str, int]) -> int:
        kind, c = value
        return c * SHAPE[2] * SHAPE[3] if kind == MAP and self._flattens(v) else c

    def _flattens(self, v: int) -> bool:
        flags = self.program.flatten_head
        at = self.heads.index(v)
        return at < len(flags) and flags[at]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for i, op in enumerate(self.program.ops):
            name, a = op[0], values[op[1]]
            if f"n{i}" in self.layers:
                values.append(self.layers[f"n{i}"](a))
            elif name == "relu":
                values.append(torch.relu(a))
            elif name == "pool":
                values.append(a.mean((2, 3)))
            elif name == "flatten":
                values.append(torch.flatten(a, 1))
            elif name == "cat":
                values.append(torch.cat([a, values[op[2]]], 1))
            elif name == "add":
                values.append(a + values[op[2]])
            elif name == "slice":
                values.append(a[:, op[2] : op[3]])
            elif name == "split":
                values.extend(torch.split(a, op[2], dim=1))
            else:  # chunk
                values.extend(torch.chunk(a, op[2], dim=1))
        feats = []
        for v in self.heads:
            z = values[v]
            if z.dim() == 4:
                z = torch.flatten(z, 1) if self._flattens(v) else z.mean((2, 3))
            feats.append(z)
        return self.head(feats[0] if len(feats) == 1 else torch.cat(feats, 1))


def _layer(op: tuple, value: tuple[str, int]) -> nn.Module | None:
    kind, c = value
    name = op[0]
    if name == "conv":
        return nn.Conv2d(c, op[2], op[3], padding=op[3] // 2)
    if name == "dw":
        return nn.Conv2d(c, c, 3, padding=1, groups=c)
    if name == "gconv":
        return nn.Conv2d(c, op[3], 3, padding=1, groups=op[2])
    if name == "bn":
        return nn.BatchNorm2d(c) if kind == MAP else nn.BatchNorm1d(c)
    if name == "linear":
        return nn.Linear(c, op[2])
    return None


def source(program: Program) -> str:
    """The program as the lines of a ``forward()`` (for reading a failing example)."""
    lines, made = [], 1
    for i, op in enumerate(program.ops):
        count = len(widths(program.ops[: i + 1])) - made
        outs = ", ".join(f"v{made + j}" for j in range(count))
        made += count
        args = [f"v{a}" for a in _sources(op)] + [str(a) for a in op[1 + len(_sources(op)) :]]
        lines.append(f"{outs} = {op[0]}({', '.join(args)})")
    heads = ", ".join(f"v{v}" for v in unread(program.ops))
    lines.append(f"return head(cat({heads}))")
    return "\n".join(lines)


@st.composite
def programs(draw: st.DrawFn, max_ops: int = 7) -> Program:
    """A random program of 1 to ``max_ops`` operations, the first a conv of the input."""
    ops: list[tuple] = [("conv", 0, draw(st.integers(2, 8)), draw(st.sampled_from([1, 3])))]
    values = widths(tuple(ops))
    for _ in range(draw(st.integers(0, max_ops - 1))):
        v = len(values) - 1 - draw(st.integers(0, len(values) - 1))  # shrinks to the latest
        kind, c = values[v]
        options = ["relu", "bn", "cat", "slice"] + (["split", "chunk"] if c > 1 else [])
        if any(w == (kind, c) for w in values[1:]):
            options.append("add")
        if kind == MAP:
            options += ["conv", "conv", "pool", "flatten"] + (["dw", "gconv"] if c > 1 else [])
        else:
            options += ["linear", "linear"]
        name = draw(st.sampled_from(options))
        if name == "conv":
            op = ("conv", v, draw(st.integers(2, 8)), draw(st.sampled_from([1, 3])))
        elif name == "linear":
            op = ("linear", v, draw(st.integers(2, 8)))
        elif name == "gconv":
            groups = draw(st.sampled_from([g for g in range(2, c + 1) if c % g == 0]))
            op = ("gconv", v, groups, groups * draw(st.integers(1, 2)))
        elif name == "cat":
            others = [w for w, (k, n) in enumerate(values) if k == kind and n + c <= MAX_WIDTH]
            if not others:
                continue
            op = ("cat", v, draw(st.sampled_from(others)))
        elif name == "add":
            op = (
                "add",
                v,
                draw(st.sampled_from([w for w in range(1, len(values)) if values[w] == (kind, c)])),
            )
        elif name == "slice":
            a = draw(st.integers(0, c - 1))
            op = ("slice", v, a, draw(st.integers(a + 1, c)))
        elif name == "split":
            op = ("split", v, draw(st.integers(1, c - 1)))
        elif name == "chunk":
            op = ("chunk", v, draw(st.integers(2, c)))
        elif name == "flatten" and c * SHAPE[2] * SHAPE[3] > 512:
            op = ("pool", v)
        else:
            op = (name, v)
        ops.append(op)
        values = widths(tuple(ops))
    heads = unread(tuple(ops))
    flags = draw(st.lists(st.booleans(), min_size=len(heads), max_size=len(heads)))
    return Program(tuple(ops), tuple(flags))
