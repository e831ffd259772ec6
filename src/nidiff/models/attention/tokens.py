r"""Which source token each target token takes its cross-attention map from (Prompt-to-Prompt).

Prompt-to-Prompt (Hertz et al., 2022, "Prompt-to-Prompt Image Editing with Cross Attention
Control", Sec. 3.2) edits by giving the target prompt's tokens the cross-attention maps
:math:`M_t` (``(heads, pixels, L)``, one column per token) of the source prompt. A
:class:`TokenMap` holds that correspondence as a matrix :math:`P` ``(L, L)`` (source token →
target token) and a per-target-token weight :math:`\alpha` ``(L,)``:

.. math::
    \tilde M^*_t = \alpha \odot (M_t P) + (1 - \alpha) \odot M^*_t ,

with :math:`M^*_t` the target's own maps (the product and the blend act on the token axis).

* **word swap** (:func:`replace_token_map`, P2P's "replace"): the prompts have the same number of
  words; equal words map token to token, a swapped word's tokens take the source word's maps
  (one to one when the token counts agree, else each source token's map is shared equally by
  the target word's tokens), :math:`\alpha \equiv 1`. Every row of :math:`P` sums to 1, so
  attention mass is conserved and the replaced maps stay distributions over the tokens.
* **refinement** (:func:`refine_token_map`, P2P's "refine"): the target adds (or drops) words.
  Words are aligned by a longest common subsequence over the words' token ids
  (:func:`align`); aligned tokens take their source maps (:math:`\alpha = 1`), new target tokens
  keep their own (:math:`\alpha = 0`).

Words are the prompt's whitespace-separated pieces, tokenised one by one; their concatenation
must be the tokenisation of the whole prompt (true for CLIP's tokenizer, whose pieces never
cross whitespace). Position 0 is the start token; the end token and the padding after the last
word map in order (``_tail``). :func:`token_weights` builds P2P's re-weighting vector
("attention re-weighting", Sec. 3.2) for chosen target words.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "TokenMap",
    "Word",
    "align",
    "refine_token_map",
    "replace_token_map",
    "token_weights",
    "word_spans",
]


@dataclass(frozen=True)
class Word:
    """One whitespace-separated word of a prompt: its text, token ids, and token positions
    ``start .. stop-1`` in the encoded sequence (position 0 is the start token)."""

    text: str
    ids: tuple[int, ...]
    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class TokenMap:
    r"""The source → target token correspondence of P2P's cross-attention edit (module docstring).

    Attributes:
        matrix: :math:`P` ``(L, L)`` float32; ``matrix[s, j]`` is the weight of source token
            ``s`` in the map given to target token ``j`` (rows sum to 1 for a word swap; rows of
            removed words and columns of new words are 0 for a refinement).
        alpha: :math:`\alpha` ``(L,)`` float32 in ``[0, 1]``; ``1`` takes the mapped source map,
            ``0`` keeps the target's own.
    """

    matrix: Tensor
    alpha: Tensor

    def __post_init__(self) -> None:
        m, a = self.matrix, self.alpha
        if m.ndim != 2 or m.shape[0] != m.shape[1] or a.shape != (m.shape[0],):
            raise ValueError(
                f"a TokenMap needs matrix (L, L) and alpha (L,), got {tuple(m.shape)} and "
                f"{tuple(a.shape)}"
            )

    @property
    def length(self) -> int:
        """The context length ``L``."""
        return int(self.alpha.shape[0])

    @classmethod
    def identity(cls, length: int) -> TokenMap:
        """Every target token takes the source map at its own position (same prompt tokens)."""
        return cls(torch.eye(length), torch.ones(length))

    def apply(self, source: Tensor, target: Tensor) -> Tensor:
        r""":math:`\alpha\odot(M P) + (1-\alpha)\odot M^*` for maps ``(..., L)`` (a new tensor)."""
        P = self.matrix.to(device=source.device, dtype=source.dtype)
        a = self.alpha.to(device=source.device, dtype=source.dtype)
        return a * (source @ P) + (1 - a) * target


def word_spans(tokenizer: Any, prompt: str) -> list[Word]:
    """The words of ``prompt`` with their token ids and positions (module docstring).

    Raises:
        ValueError: if the prompt does not fit the context (start + tokens + end ``> L``), or if
            its words tokenised one by one differ from the whole prompt's tokens.
    """
    L = int(tokenizer.model_max_length)
    full = list(tokenizer(prompt).input_ids)
    if len(full) > L:
        raise ValueError(
            f"prompt {prompt!r} has {len(full)} tokens, more than the context length {L}; "
            "shorten it (attention maps are aligned over the whole context)"
        )
    words, pos = [], 1
    for text in prompt.split():
        ids = tuple(tokenizer(text, add_special_tokens=False).input_ids)
        words.append(Word(text, ids, pos, pos + len(ids)))
        pos += len(ids)
    if [i for w in words for i in w.ids] != full[1:-1]:
        raise ValueError(
            f"the words of {prompt!r} tokenised one by one do not give the prompt's tokens; "
            "this tokenizer merges across whitespace, which word alignment does not support"
        )
    return words


def align(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[int, int]]:
    """A longest common subsequence of ``a`` and ``b`` as index pairs ``(i, j)``, increasing.

    Dynamic programming over suffixes (``O(len(a)·len(b))``), traced back greedily from the
    start: an equal pair is taken whenever taking it keeps the alignment longest, so ties are
    broken deterministically towards early matches.
    """
    n, m = len(a), len(b)
    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: LCS of a[i:], b[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if a[i] == b[j]:
                best[i][j] = best[i + 1][j + 1] + 1
            else:
                best[i][j] = max(best[i + 1][j], best[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j] and best[i][j] == best[i + 1][j + 1] + 1:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _tail(P: Tensor, src: list[Word], tgt: list[Word]) -> None:
    """Map the start token, and the end token and padding in order (in place on ``P``).

    The tails ``s_end .. L-1`` and ``t_end .. L-1`` are paired in order; if the source tail is
    longer its extra positions all go to the target's last position, if shorter its last
    position is shared equally by the target's remaining ones: every source row sums to 1.
    """
    L = P.shape[0]
    P[0, 0] = 1.0
    s_end = src[-1].stop if src else 1
    t_end = tgt[-1].stop if tgt else 1
    m = min(L - s_end, L - t_end)
    for k in range(m - 1):
        P[s_end + k, t_end + k] = 1.0
    P[s_end + m - 1 :, t_end + m - 1 :] = 1.0 / (L - (t_end + m - 1))


def replace_token_map(tokenizer: Any, source: str, target: str) -> TokenMap:
    """Word swap: the ``k``-th target word takes the ``k``-th source word's maps (module docstring).

    Raises:
        ValueError: if the prompts have different numbers of words (use :func:`refine_token_map`).
    """
    src, tgt = word_spans(tokenizer, source), word_spans(tokenizer, target)
    if len(src) != len(tgt):
        raise ValueError(
            f"word swap needs prompts with the same number of words ({len(src)} in {source!r}, "
            f"{len(tgt)} in {target!r}); use refinement for added or removed words"
        )
    L = int(tokenizer.model_max_length)
    P = torch.zeros(L, L)
    for s, t in zip(src, tgt, strict=True):
        ns, nt = s.stop - s.start, t.stop - t.start
        if ns == nt:
            for k in range(ns):
                P[s.start + k, t.start + k] = 1.0
        else:  # each source token's map shared equally by the target word's tokens
            P[s.start : s.stop, t.start : t.stop] = 1.0 / nt
    _tail(P, src, tgt)
    return TokenMap(P, torch.ones(L))


def refine_token_map(tokenizer: Any, source: str, target: str) -> TokenMap:
    """Refinement: words common to both prompts (:func:`align` over their token ids) take the
    source maps; the target's other tokens keep their own (module docstring)."""
    src, tgt = word_spans(tokenizer, source), word_spans(tokenizer, target)
    L = int(tokenizer.model_max_length)
    P, alpha = torch.zeros(L, L), torch.zeros(L)
    for i, j in align([w.ids for w in src], [w.ids for w in tgt]):
        for k in range(len(src[i].ids)):
            P[src[i].start + k, tgt[j].start + k] = 1.0
            alpha[tgt[j].start + k] = 1.0
    _tail(P, src, tgt)
    alpha[0] = 1.0
    alpha[(tgt[-1].stop if tgt else 1) :] = 1.0
    return TokenMap(P, alpha)


def token_weights(tokenizer: Any, prompt: str, weights: Mapping[str, float]) -> Tensor:
    """P2P re-weighting vector ``(L,)``: ``weights[word]`` on every token of each occurrence of
    ``word`` in ``prompt`` (compared by token ids), ``1`` elsewhere.

    Raises:
        ValueError: for a word that is not in the prompt, or a negative or non-finite weight.
    """
    words = word_spans(tokenizer, prompt)
    w = torch.ones(int(tokenizer.model_max_length))
    for key, c in weights.items():
        c = float(c)
        if not (c >= 0 and c < float("inf")):
            raise ValueError(f"the weight of {key!r} must be finite and >= 0, got {c}")
        ids = tuple(tokenizer(key, add_special_tokens=False).input_ids)
        hits = [v for v in words if v.ids == ids]
        if not hits:
            raise ValueError(
                f"{key!r} is not a word of {prompt!r} (words: {[v.text for v in words]})"
            )
        for v in hits:
            w[v.start : v.stop] = c
    return w
