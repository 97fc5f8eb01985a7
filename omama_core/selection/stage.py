"""The selection stage: the model's scores -> each query's answer and visibility.

With the default `SelectionConfig` this is the published rule: the best-scoring candidate
wins, and the visibility (the learned output, or else the best score or its sigmoid) is
thresholded by the caller. Each further rule is optional and not published:

    rule                       config key(s)                    uses the call's other queries
    reverse check              reverse_check                    no (the source image's regions)
    layout prior               layout_weight/_tolerance/_cap    yes
    whole object / part check  whole_object_margin/_part_margin no
    one object, one mask       exclusive_matches                yes

Under the independent protocol (`joint=False`) every query is answered as if it were alone
in its call: the rules that use the other queries do nothing, and each answer is the one a
call with that query alone would give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SelectionConfig
from ..masks import mask_centroids
from .layout import fit_layout, layout_penalty
from .rules import choose_candidates, exclusive_choices, outside_regions, ranked_choices, reverse_checked_scores

LAYOUT_OPTIONS = 4  # each query's best objects that the layout fit weighs (layout.py)


@dataclass
class Selected:
    """answers (K,) the candidate each query answers with; first_choices (K,) its choice
    before exclusive_matches (what a query judged not visible still reports); scores (K, N)
    the scores the rules ended with (the model's, minus the reverse check's and the layout's
    penalties); visibility (K,) what the visibility threshold is compared with."""

    answers: np.ndarray
    first_choices: np.ndarray
    scores: np.ndarray
    visibility: np.ndarray


class Selection:
    """Scores -> answers, as configured (see the module docstring).

    Args:
        config: the `selection:` section.
        confidence: "cosine" (the visibility is the best score) or "sigmoid" (its sigmoid,
            the publication's confidence); used when the model has no learned visibility.
    """

    def __init__(self, config: SelectionConfig, confidence: str = "cosine"):
        self.config, self.confidence = config, confidence

    def __call__(self, scores: torch.Tensor, learned_visibility: torch.Tensor | None, queries: np.ndarray,
                 active: np.ndarray, candidates, threshold: float, joint: bool = True,
                 reverse: tuple[torch.Tensor, object] | None = None) -> Selected:
        """Choose each query's answer.

        Args:
            scores: (K, N) the model's cosine scores.
            learned_visibility: (K,) the model's visibility probability, or None.
            queries: (K, Hs, Ws) bool query masks; active: (K,) bool, False for empty queries.
            candidates: the target image's Proposals.
            threshold: the visibility threshold (a query below it takes nothing from others).
            joint: False = the independent protocol (rules that use other queries are off).
            reverse: (scores (N, M) of the candidates against M source-image regions, those
                regions as Proposals), for the reverse check; None when it is off.
        """
        config = self.config
        if reverse is not None:
            reverse_scores, regions = reverse
            outside = torch.from_numpy(outside_regions(queries, regions)).to(reverse_scores.device)
            scores = reverse_checked_scores(scores, reverse_scores, outside, config.reverse_check)
        scores = scores.cpu().numpy()
        exclusive = joint and config.exclusive_matches and active.sum() > 1
        use_layout = joint and config.layout_weight > 0 and active.sum() >= 3
        # the candidates' nesting, computed once for all rules (an N x N pixel product for dense masks)
        nesting = ((torch.from_numpy(candidates.containment()), torch.from_numpy(candidates.areas()))
                   if exclusive or use_layout or config.whole_object_margin > 0 else None)
        if use_layout:
            scores = scores - self._layout_penalty(scores, queries, active, candidates, nesting)
        score_visibility = learned_visibility is None
        visibility = scores.max(axis=1) if score_visibility else learned_visibility.cpu().numpy()
        chosen = self._choose(scores, nesting)
        answers = chosen
        if exclusive:
            # with a score-based visibility, a query that will be called not visible takes nothing
            keep_above = self._score_threshold(threshold) if score_visibility else -1.0
            answers, best_left = self._exclusive(scores, chosen, nesting, active, keep_above)
            if score_visibility:
                visibility = best_left  # the best score left after the better queries took theirs
        if score_visibility and self.confidence == "sigmoid":
            visibility = 1.0 / (1.0 + np.exp(-visibility.astype(np.float64)))
        return Selected(np.asarray(answers), np.asarray(chosen), scores, np.asarray(visibility))

    def _score_threshold(self, threshold: float) -> float:
        """The visibility threshold as a score (the sigmoid's inverse for "sigmoid")."""
        if self.confidence == "cosine":
            return threshold
        if threshold <= 0.0 or threshold >= 1.0:
            return -math.inf if threshold <= 0.0 else math.inf
        return math.log(threshold / (1.0 - threshold))

    def _choose(self, scores: np.ndarray, nesting: tuple[torch.Tensor, torch.Tensor] | None) -> np.ndarray:
        """(K, N) scores -> (K,) chosen candidates (the best score at margin 0; rules.py). Per query."""
        margin = self.config.whole_object_margin
        if margin <= 0:
            return scores.argmax(1)
        k = len(scores)
        contains, areas = nesting
        return choose_candidates(torch.from_numpy(scores), contains[None].expand(k, -1, -1),
                                 areas[None].expand(k, -1), margin, self.config.whole_object_part_margin).numpy()

    def _exclusive(self, scores: np.ndarray, chosen: np.ndarray, nesting: tuple[torch.Tensor, torch.Tensor],
                   active: np.ndarray, keep_above: float) -> tuple[np.ndarray, np.ndarray]:
        """One object, one mask (rules.exclusive_choices): answers (K,) and the best score left
        to each (K,). Uses the other queries of the call."""
        contains, areas = nesting
        answers, best_left = exclusive_choices(
            torch.from_numpy(scores), torch.from_numpy(np.asarray(chosen, np.int64)), contains, areas,
            self.config.whole_object_margin, torch.from_numpy(active), keep_above,
            self.config.whole_object_part_margin)
        return answers.numpy(), best_left.numpy()

    def _layout_penalty(self, scores: np.ndarray, queries: np.ndarray, active: np.ndarray, candidates,
                        nesting: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """(K, N) penalty from the layout of the active queries' best objects (layout.py);
        zeros when no map fits. Uses the other queries of the call."""
        config, (contains, areas) = self.config, nesting
        options, option_scores = ranked_choices(torch.from_numpy(scores[active]), contains, areas, LAYOUT_OPTIONS,
                                                config.whole_object_margin, config.whole_object_part_margin)
        query_centres, candidate_centres = mask_centroids(queries[active]), candidates.centroids()
        diagonal = float(np.hypot(*candidates.image_hw))
        affine = fit_layout(query_centres, options.numpy(), option_scores.numpy(), candidate_centres, diagonal,
                            config.layout_weight, config.layout_tolerance, config.layout_cap)
        penalty = np.zeros_like(scores)
        if affine is not None:
            penalty[active] = layout_penalty(query_centres, candidate_centres, affine, diagonal,
                                             config.layout_weight, config.layout_tolerance, config.layout_cap)
        return penalty
