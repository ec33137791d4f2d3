"""FlexTok building blocks with the official parameter names (flextok_official.md §2.3-§2.6).

- Trunk block: pre-LayerNorm (no affine, eps 1e-5, float32), attention with separate bias-free
  q/k/v/proj, QK-LayerNorm over the head dim (no affine) and the μP scale 8/head_dim (not 1/√h),
  gated SiLU MLP ``fc2(silu(fc1 x) * fc3 x)`` without biases.
- adaLN block (decoder): ``adaLN_modulation.1`` maps SiLU(temb) to (expansion, 6, W) chunks in the
  order gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp; set 0 modulates the patch
  tokens, set 1 (expansion 2) the register tokens.
- FSQ (`FSQ`): bounded = tanh(z + atanh(offset/half_l))·half_l − offset, round half to even, codes =
  r/(L//2); token = Σ level_index_d · basis_d with dimension 0 least significant.
- Time embedding: frequencies (1000/max_timestep)·exp(−ln(256)·j/half), [cos, sin], MLP.
- Patch helpers: 2x2 patch vectors ordered (row-in-patch, column-in-patch, channel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LN_EPS = 1e-5


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Affine-free LayerNorm over the last dim, computed in float32 (as the official trunks do)."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=_LN_EPS).to(x.dtype)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Channels-last latents ``[B,H,W,C]`` -> patch vectors ``[B,H/p,W/p,p*p*C]`` (row, col, channel)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h // p, w // p, p * p * c)


def unpatchify(x: torch.Tensor, p: int, c: int) -> torch.Tensor:
    """Inverse of `patchify`: ``[B,g,g,p*p*C]`` -> ``[B,g*p,g*p,C]``."""
    b, gh, gw, _ = x.shape
    return x.reshape(b, gh, gw, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, gh * p, gw * p, c)


class Attention(nn.Module):
    """Multi-head attention, bias-free projections, QK-norm, scale 8/head_dim."""

    def __init__(self, dim: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.wq, self.wk, self.wv = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, weights: list | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = d // self.head_dim
        q, k, v = (f(x).reshape(b, n, h, self.head_dim).transpose(1, 2) for f in (self.wq, self.wk, self.wv))
        q, k = layer_norm(q), layer_norm(k)
        scale = 8.0 / self.head_dim  # μP attention scale of the official trunk
        if weights is not None:  # explicit softmax, only when attention maps are asked for
            att = (q @ k.transpose(-2, -1)) * scale
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            att = att.softmax(dim=-1)
            weights.append(att.mean(dim=1))
            out = att @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class GatedMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.fc3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class Block(nn.Module):
    """Encoder block: x + Attn(LN x); x + MLP(LN x)."""

    def __init__(self, dim: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.attn = Attention(dim, head_dim)
        self.mlp = GatedMlp(dim, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(layer_norm(x), mask)
        return x + self.mlp(layer_norm(x))


class AdaLNBlock(nn.Module):
    """Decoder block with adaLN-zero modulation; with expansion 2 the first `n_first` tokens (patches)
    use modulation set 0 and the rest (registers) set 1."""

    def __init__(self, dim: int, head_dim: int, hidden: int, expansion: int) -> None:
        super().__init__()
        self.expansion = expansion
        self.attn = Attention(dim, head_dim)
        self.mlp = GatedMlp(dim, hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * expansion * dim))

    def _modulate(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, n_first: int) -> torch.Tensor:
        # shift/scale: [B, expansion, W]; each token group gets its own set.
        if self.expansion == 1:
            return h * (1 + scale[:, 0, None]) + shift[:, 0, None]
        return torch.cat([h[:, :n_first] * (1 + scale[:, 0, None]) + shift[:, 0, None],
                          h[:, n_first:] * (1 + scale[:, 1, None]) + shift[:, 1, None]], dim=1)

    def _gate(self, h: torch.Tensor, gate: torch.Tensor, n_first: int) -> torch.Tensor:
        if self.expansion == 1:
            return h * gate[:, 0, None]
        return torch.cat([h[:, :n_first] * gate[:, 0, None], h[:, n_first:] * gate[:, 1, None]], dim=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, n_first: int, weights: list | None = None) -> torch.Tensor:
        b, _, d = x.shape
        m = self.adaLN_modulation(temb).reshape(b, self.expansion, 6, d)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = m.unbind(dim=2)
        h = self._modulate(layer_norm(x), shift_msa, scale_msa, n_first)
        x = x + self._gate(self.attn(h, None, weights), gate_msa, n_first)
        h = self._modulate(layer_norm(x), shift_mlp, scale_mlp, n_first)
        return x + self._gate(self.mlp(h), gate_mlp, n_first)


class Trunk(nn.Module):
    """``blocks.{i}``; no final norm (the heads normalise)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class Linear(nn.Module):
    """Holder giving the ``proj`` name used by the official heads and linear layers."""

    def __init__(self, din: int, dout: int) -> None:
        super().__init__()
        self.proj = nn.Linear(din, dout)


class PatchEmbed(nn.Module):
    def __init__(self, din: int, dout: int) -> None:
        super().__init__()
        self.patch_proj = nn.Linear(din, dout)


class Table(nn.Module):
    """A stored table under the name ``posembs`` (sin-cos or learned)."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.posembs = nn.Parameter(torch.zeros(*shape), requires_grad=False)


class ToPatchesHead(nn.Module):
    """LN, x·(1+scale)+shift with (shift, scale) = Linear(SiLU(temb)) halves, then Linear to patches."""

    def __init__(self, dim: int, dout: int) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.proj = nn.Linear(dim, dout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(temb).chunk(2, dim=-1)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return self.proj(layer_norm(x) * (1 + scale.reshape(shape)) + shift.reshape(shape))


class TimeEmbed(nn.Module):
    """t ``[B]`` float32 -> ``[B, W]``: [cos, sin] of t·(1000/max_timestep)·exp(−ln 256·j/half), MLP."""

    def __init__(self, dim: int, freq_size: int, max_timestep: float) -> None:
        super().__init__()
        self.freq_size, self.max_timestep = freq_size, max_timestep
        self.mlp = nn.Sequential(nn.Linear(freq_size, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_size // 2
        freqs = torch.exp(-math.log(256.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * (1000.0 / self.max_timestep))[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.freq_size % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return self.mlp(emb)


class FSQ:
    """Finite scalar quantisation with the official bound, rounding and token basis (no parameters)."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        self.levels = levels

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        lv = torch.tensor(self.levels, dtype=torch.int32, device=device)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], dtype=torch.int64, device=device), dim=0)
        return lv, basis, (lv // 2).float()

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        lv, _, _ = self._tensors(z.device)
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z.float() + shift).tanh() * half_l - offset

    def quantize(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Register outputs ``[..., d]`` -> bounded values, codes, level indices and tokens ``[...]``."""
        lv, basis, half_w = self._tensors(z.device)
        bounded = self.bound(z)
        codes = torch.round(bounded) / half_w  # torch.round rounds half to even, as the official code
        idx = (codes * half_w + half_w).round().to(torch.int64)
        return {"fsq_bounded": bounded, "fsq_codes": codes, "fsq_level_indices": idx,
                "tokens": (idx * basis).sum(dim=-1)}

    def codes_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[...]`` int64 -> codes ``[..., d]`` float32 (the inverse map ``detokenize`` uses)."""
        lv, basis, half_w = self._tensors(tokens.device)
        idx = (tokens[..., None] // basis) % lv
        return (idx.float() - half_w) / half_w
