"""One more segment for a lens whose model has no k (DenStream, DBSTREAM), found at a refinement.

A density model's warm-up clusters become the lens's first segments, and its later clusters never add one
(after the first refinement the segments stay where the population puts them: :mod:`~segmenter.lenses.summary`).
When batch k-means says the population holds one more group than the segments
(:func:`~segmenter.lenses.quality.more_segments`), :func:`grown` seeds it beside the live segments and
polishes all of them with Lloyd steps on every customer; the lens then has the registry give it a number
(:meth:`~segmenter.lenses.registry.SegmentRegistry.born`): the segment lives in the lens's registry, as every
summarising model's segments do.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> xs = np.concatenate([rng.normal(c, 0.1, (50, 1)) for c in (0.0, 4.0, 8.0)])
>>> two = np.array([[0.0], [6.0]])
>>> check = Assessment(xs, two, np.random.default_rng(1))
>>> cs, own, _ = grown(xs, two, 1e9, check, 20, np.random.default_rng(1))
>>> np.round(np.sort(cs.ravel())).tolist(), bool(own < 3.0)
([0.0, 4.0, 8.0], True)
"""

from __future__ import annotations

import logging

import numpy as np

from segmenter.lenses.lloyd import REFINE_TOL, lloyd_sse
from segmenter.lenses.quality import Assessment, more_segments

__all__ = ["grown"]

logger = logging.getLogger(__name__)


def grown(  # noqa: PLR0913, PLR0917 - the refinement's state, handed over as it stands
    xs: np.ndarray, cs: np.ndarray, own: float, check: Assessment, iterations: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, Assessment]:
    """The refinement's centers ``cs`` (SSE ``own`` on the rows ``xs``) with one more row, when the population
    calls for it (:func:`~segmenter.lenses.quality.more_segments`); else the ones given.

    Returns the centers (the live segments' rows first, in order, then the new segment's), their SSE and
    assessment. The new center is kept only where its Lloyd steps leave it customers and lower the SSE.
    """
    seed = more_segments(check, rng)
    if seed is None:
        return cs, own, check
    more, labels, more_sse = lloyd_sse(xs, np.vstack([cs, seed]), iterations, reseed_empty=False, tol=REFINE_TOL)
    held = int(np.count_nonzero(labels == len(cs)))
    if not held or not more_sse < own:
        logger.debug("a new segment holds %d customers and takes the SSE from %.4g to %.4g: not kept",
                     held, own, more_sse)  # fmt: skip
        return cs, own, check
    logger.debug("%d -> %d segments: SSE %.4g -> %.4g", len(cs), len(more), own, more_sse)
    return more, more_sse, Assessment(xs, more, rng, restarted=True)
