"""The one description of a transformer layer that pruning touches, for every supported family.

Pruning, compaction, FLOP counting and loading a compacted model all need the same facts
about an encoder layer: where its Q/K/V/O and feed-forward linears are, the head size and
count, and what to change when heads or neurons are removed. They live here, once.

A layer is found by STRUCTURE: a module whose attributes, followed along a family's paths
(``FAMILIES``), are linears. Names differ between families (``query`` / ``query_proj`` /
``q_lin`` / fused ``Wqkv``), the roles do not:

- ``q``, ``k``, ``v`` (or one fused ``qkv`` with rows [Q; K; V]): rows = heads x head size;
- ``o``: columns = heads x head size;
- ``ffn_in``: rows = feed-forward neurons (gated families: [input; gate], two rows a neuron);
- ``ffn_out``: columns = feed-forward neurons.

How the forward pass derives the head count matters for removing heads (transformers 5):
BERT-like, DistilBERT and ModernBERT reshape with ``(..., -1, head_size)``, so the width
decides; DeBERTa-v2/v3 reshapes with ``self.num_attention_heads``, which must be updated,
and its position projections (``pos_key_proj``/``pos_query_proj``) have one row block per
head too. Each family lists those attributes.

Not supported (``find_encoder_layers`` says so, naming the model class): ALBERT (one layer
reused at every depth), MPNet (one relative-position bias for all heads, computed outside the
layers), DeBERTa v1 (Q/K/V interleaved per head in one ``in_proj``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from blockprune.errors import BlockpruneError

#: Config key under which compaction records the per-layer layout (heads kept, FFN width).
LAYOUT_KEY = "blockprune_layout"


@dataclass(frozen=True)
class Family:
    """Where one model family keeps each role, as dotted paths from the layer module."""

    name: str
    attention: str  # the module holding Q/K/V and the head-count attributes
    qkv: tuple[str, ...]  # on `attention`: ("query", "key", "value") or one fused ("Wqkv",)
    o: str
    ffn_in: str
    ffn_out: str
    act: str
    head_dim_attr: str  # on `attention`: what the forward reshapes with
    head_count_attrs: tuple[str, ...] = ()  # on `attention`: set to the number of heads kept
    head_width_attrs: tuple[str, ...] = ()  # on `attention`: set to heads x head size
    head_rows_extra: tuple[str, ...] = ()  # on `attention`, optional: unmasked linears with per-head rows
    gated: bool = False  # ffn_in rows are [input; gate] and the FFN computes act(input) * gate
    examples: str = ""

    @property
    def fused(self) -> bool:
        return len(self.qkv) == 1


FAMILIES: tuple[Family, ...] = (
    Family(
        "BERT-like",
        attention="attention.self",
        qkv=("query", "key", "value"),
        o="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        act="intermediate.intermediate_act_fn",
        head_dim_attr="attention_head_size",
        head_count_attrs=("num_attention_heads",),
        head_width_attrs=("all_head_size",),
        examples="BERT, MuRIL, RoBERTa, XLM-R, ELECTRA, CamemBERT, ERNIE, e5",
    ),
    Family(
        "DeBERTa-v2/v3",
        attention="attention.self",
        qkv=("query_proj", "key_proj", "value_proj"),
        o="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        act="intermediate.intermediate_act_fn",
        head_dim_attr="attention_head_size",
        head_count_attrs=("num_attention_heads",),
        head_width_attrs=("all_head_size",),
        head_rows_extra=("pos_key_proj", "pos_query_proj"),
        examples="DeBERTa-v2, DeBERTa-v3, mDeBERTa",
    ),
    Family(
        "DistilBERT",
        attention="attention",
        qkv=("q_lin", "k_lin", "v_lin"),
        o="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        act="ffn.activation",
        head_dim_attr="attention_head_size",
        head_count_attrs=("n_heads",),
        examples="DistilBERT, DistilmBERT",
    ),
    Family(
        "ModernBERT",
        attention="attn",
        qkv=("Wqkv",),
        o="attn.Wo",
        ffn_in="mlp.Wi",
        ffn_out="mlp.Wo",
        act="mlp.act",
        head_dim_attr="head_dim",
        gated=True,
        examples="ModernBERT",
    ),
)

ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")


def _get(module: object, path: str) -> object:
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, name, value)


def is_linear_like(module: object) -> bool:
    """An ``nn.Linear`` or a masked stand-in for one (a 2-D weight)."""
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Module) and getattr(weight, "ndim", 0) == 2


@dataclass
class EncoderLayer:
    """One transformer layer seen through its family's layout: linears by role, heads, FFN width."""

    module: nn.Module
    family: Family
    _paths: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        f = self.family
        qkv = [f"{f.attention}.{n}" for n in f.qkv]
        self._paths = {"qkv": qkv[0]} if f.fused else dict(zip(("q", "k", "v"), qkv))
        self._paths.update(o=f.o, ffn_in=f.ffn_in, ffn_out=f.ffn_out)

    @classmethod
    def match(cls, module: nn.Module) -> EncoderLayer | None:
        for family in FAMILIES:
            attention = _get(module, family.attention)
            if not isinstance(attention, nn.Module):
                continue
            paths = [f"{family.attention}.{n}" for n in family.qkv] + [family.o, family.ffn_in, family.ffn_out]
            if all(is_linear_like(_get(module, p)) for p in paths):
                return cls(module, family)
        return None

    # --- linears by role -------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        """The maskable linears: ("q","k","v","o","ffn_in","ffn_out") or with one fused "qkv"."""
        return tuple(self._paths)

    @property
    def attention_roles(self) -> tuple[str, ...]:
        return tuple(r for r in self._paths if r not in ("ffn_in", "ffn_out"))

    def linear(self, role: str) -> nn.Module:
        return _get(self.module, self._paths[role])

    def set_linear(self, role: str, linear: nn.Module) -> None:
        _set(self.module, self._paths[role], linear)

    @property
    def attention(self) -> nn.Module:
        return _get(self.module, self.family.attention)

    def extra_head_linears(self) -> dict[str, nn.Module]:
        """Unmasked linears whose rows are per head (DeBERTa's position projections), by name."""
        found = {n: getattr(self.attention, n, None) for n in self.family.head_rows_extra}
        return {n: m for n, m in found.items() if is_linear_like(m)}

    @property
    def act(self):
        return _get(self.module, self.family.act)

    # --- shapes ------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        value = getattr(self.attention, self.family.head_dim_attr, None)
        if not isinstance(value, int) or value < 1:
            raise BlockpruneError(
                f"Cannot tell the head size of {type(self.attention).__name__}: its attribute "
                f"'{self.family.head_dim_attr}' is {value!r} ({self.family.name} layout)."
            )
        return value

    @property
    def attention_width(self) -> int:
        """Heads x head size, from the O projection's input width (not from the config)."""
        return int(self.linear("o").weight.shape[1])

    @property
    def num_heads(self) -> int:
        return self.attention_width // self.head_dim

    @property
    def hidden_size(self) -> int:
        return int(self.linear("o").weight.shape[0])

    @property
    def ffn_size(self) -> int:
        return int(self.linear("ffn_out").weight.shape[1])

    @property
    def gated(self) -> bool:
        return self.family.gated

    def relative_position_terms(self) -> tuple[int, int]:
        """DeBERTa's disentangled attention: (score terms c2p/p2c, relative positions), else (0, 0).

        Each term scores every query against ``2 * span`` relative positions and projects the
        ``2 * span`` relative embeddings through a head-sized linear (read from the module,
        as the forward does: ``pos_att_type`` and ``pos_ebd_size``).
        """
        att = self.attention
        if not getattr(att, "relative_attention", False):
            return 0, 0
        terms = sum(t in ("c2p", "p2c") for t in getattr(att, "pos_att_type", []))
        return terms, 2 * int(att.pos_ebd_size)

    def check(self, index: int) -> None:
        """Raise when the linears' widths disagree (a model compacted by hand, incorrectly)."""
        a, f = self.attention_width, self.ffn_size
        widths = {r: int(self.linear(r).weight.shape[0]) for r in self.attention_roles if r != "o"}
        want = {r: 3 * a if r == "qkv" else a for r in widths}
        ffn_rows = int(self.linear("ffn_in").weight.shape[0])
        if widths != want or a % self.head_dim or ffn_rows != (2 * f if self.gated else f):
            raise BlockpruneError(
                f"Encoder layer {index} ({self.family.name}) is inconsistent: Q/K/V output widths {widths}, "
                f"O takes {a} (head size {self.head_dim}); {self.family.ffn_in} has {ffn_rows} outputs, "
                f"{self.family.ffn_out} takes {f}. The model was compacted incorrectly."
            )

    # --- per-head and per-neuron views (of a weight, a mask or a bias) ------------------------
    def value_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """(heads, head_dim, ...) view of V's rows, given V's (or fused QKV's) weight/mask/bias."""
        if self.family.fused:
            tensor = tensor[2 * self.attention_width :]
        return tensor.reshape(self.num_heads, self.head_dim, *tensor.shape[1:])

    def output_cols(self, tensor: torch.Tensor) -> torch.Tensor:
        """(heads, out, head_dim) view of O's columns."""
        return tensor.reshape(tensor.shape[0], self.num_heads, self.head_dim).permute(1, 0, 2)

    def ffn_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """(neurons, parts, ...) view of ffn_in's rows: parts = 1, or 2 ([input, gate]) when gated."""
        parts = 2 if self.gated else 1
        return tensor.reshape(parts, self.ffn_size, *tensor.shape[1:]).transpose(0, 1)

    # --- resizing -----------------------------------------------------------------------------
    def _head_index(self, heads: list[int], parts: int) -> torch.Tensor:
        a, d = self.attention_width, self.head_dim
        rows = [p * a + h * d + i for p in range(parts) for h in heads for i in range(d)]
        return torch.tensor(rows, dtype=torch.long, device=self.linear("o").weight.device)

    def set_num_heads(self, heads: int) -> None:
        for name in self.family.head_count_attrs:
            setattr(self.attention, name, heads)
        for name in self.family.head_width_attrs:
            setattr(self.attention, name, heads * self.head_dim)

    def keep(self, heads: list[int], neurons: torch.Tensor, linears: dict[str, nn.Linear]) -> None:
        """Install ``linears`` (by role, same shapes as now) sliced to the kept heads and neurons."""
        cols = self._head_index(heads, 1)
        rows = {r: self._head_index(heads, 3 if r == "qkv" else 1) for r in self.attention_roles if r != "o"}
        neurons = neurons.to(cols.device)
        ffn_rows = torch.cat([neurons, neurons + self.ffn_size]) if self.gated else neurons
        for role, index in rows.items():
            self.set_linear(role, slice_linear(linears[role], rows=index))
        self.set_linear("o", slice_linear(linears["o"], cols=cols))
        for name, lin in self.extra_head_linears().items():
            setattr(self.attention, name, slice_linear(lin, rows=cols))
        self.set_linear("ffn_in", slice_linear(linears["ffn_in"], rows=ffn_rows))
        self.set_linear("ffn_out", slice_linear(linears["ffn_out"], cols=neurons))
        self.set_num_heads(len(heads))

    def resize(self, heads: int, ffn: int, head_dim: int) -> None:
        """Give a freshly built layer empty linears of the recorded widths (weights are loaded next)."""
        a = heads * head_dim
        for role in self.attention_roles:
            old = self.linear(role)
            shape = (old.weight.shape[0], a) if role == "o" else (3 * a if role == "qkv" else a, old.weight.shape[1])
            self.set_linear(role, _empty_like(old, *shape))
        for name, lin in self.extra_head_linears().items():
            setattr(self.attention, name, _empty_like(lin, a, lin.weight.shape[1]))
        fin, fout = self.linear("ffn_in"), self.linear("ffn_out")
        self.set_linear("ffn_in", _empty_like(fin, 2 * ffn if self.gated else ffn, fin.weight.shape[1]))
        self.set_linear("ffn_out", _empty_like(fout, fout.weight.shape[0], ffn))
        self.set_num_heads(heads)


def _new_linear(out_f: int, in_f: int, bias: bool, like: torch.Tensor) -> nn.Linear:
    with warnings.catch_warnings():  # zero-width linears warn that init is a no-op
        warnings.simplefilter("ignore", UserWarning)
        return nn.Linear(in_f, out_f, bias=bias, device=like.device, dtype=like.dtype)


def _empty_like(linear: nn.Module, out_f: int, in_f: int) -> nn.Linear:
    return _new_linear(out_f, in_f, getattr(linear, "bias", None) is not None, linear.weight)


def slice_linear(linear: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding the given rows (outputs, with their bias) and columns (inputs)."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = _new_linear(weight.shape[0], weight.shape[1], bias is not None, weight)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def supported_families() -> str:
    return "; ".join(f"{f.name} ({f.examples})" for f in FAMILIES)


def find_encoder_layers(model: nn.Module) -> list[EncoderLayer]:
    """Every transformer layer of a supported family, in module order; a clear error when none."""
    layers = [layer for m in model.modules() if (layer := EncoderLayer.match(m)) is not None]
    if not layers:
        raise BlockpruneError(
            f"{type(model).__name__} has no encoder layers blockprune can prune (no BERT-shaped encoder layers of a "
            f"supported family). Supported: {supported_families()}. Not supported yet: ALBERT (one layer shared by "
            "all depths), MPNet, DeBERTa v1 and other families."
        )
    return layers


def compacted_layout(model: nn.Module) -> dict:
    """The per-layer widths that ``resize_encoder`` needs, as stored in the config under ``LAYOUT_KEY``."""
    layers = find_encoder_layers(model)
    return {
        "num_heads": [layer.num_heads for layer in layers],
        "intermediate_sizes": [layer.ffn_size for layer in layers],
        "head_dim": layers[0].head_dim,
    }


def resize_encoder(model: nn.Module, layout: dict) -> None:
    """Give a freshly built model the layer widths recorded by compaction (weights come next)."""
    layers = find_encoder_layers(model)
    if len(layers) != len(layout["num_heads"]):
        raise BlockpruneError(f"{LAYOUT_KEY} has {len(layout['num_heads'])} layers, the model {len(layers)}.")
    for layer, heads, ffn in zip(layers, layout["num_heads"], layout["intermediate_sizes"]):
        layer.resize(int(heads), int(ffn), int(layout["head_dim"]))
