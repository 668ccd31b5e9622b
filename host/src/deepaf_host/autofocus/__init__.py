"""Autofocus strategies behind one interface (see ``base``).

=================  ==============================================================
``stack``          N planes around the start, sharpest by a focus measure, refined
``search``         Brent's bounded search on a focus measure (OughtaFocus; the default)
``sweep``          one continuous Z sweep, frames stamped with the z the board reports
``single-shot``    one frame -> model predicts dz -> one move (``models/``)
=================  ==============================================================

:func:`make_strategy` builds one by name with options; unknown names and options are
``ConfigError``; ``single-shot`` without a model runtime is an ``AutofocusError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .base import (
    AutofocusResult,
    FocusContext,
    FocusLimits,
    FocusStage,
    Found,
    Probe,
    Strategy,
    guarded_run,
)
from .search import SearchAutofocus
from .single_shot import (
    DefocusPredictor,
    SingleShotAutofocus,
)
from .stack import StackAutofocus
from .sweep import SweepAutofocus


def _single_shot(model: str | None = None, model_options: dict[str, Any] | None = None,
                 predictor: DefocusPredictor | None = None, **options: Any) -> Strategy:
    """``predictor``: the model to use; by default the TFLite runtime loads ``model``."""
    if predictor is None:
        from ..model.runtime import load_predictor  # ai-edge-litert: only single-shot needs it

        predictor = load_predictor(model, **(model_options or {}))
    options.setdefault("fallback", SearchAutofocus())
    return SingleShotAutofocus(predictor=predictor, **options)


#: Strategy factories by name: ``factory(**options) -> Strategy``.
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "stack": StackAutofocus,
    "search": SearchAutofocus,
    "sweep": SweepAutofocus,
    "single-shot": _single_shot,
}

#: The scan's default. Single-shot (one frame per tile) is the product's aim, but the
#: shipped model misses focus on the partially coherent simulator (median 1.7 um, no tile
#: of 9 within DoF/2 in the scan bench) and on real tissue (issue 12): a default that
#: writes blurred tiles is not one to trust. Brent search lands within 0.22 um (median)
#: at about 8 frames per tile. Back to "single-shot" when a model meets issue 12's bars.
DEFAULT_STRATEGY = "search"


def make_strategy(name: str, **options: Any) -> Strategy:
    """Build the strategy ``name`` with ``options`` (its dataclass fields)."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ConfigError("autofocus", f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError("autofocus", f"bad options for {name!r}: {exc}") from None


__all__ = [
    "DEFAULT_STRATEGY", "STRATEGIES", "AutofocusResult", "DefocusPredictor", "FocusContext", "FocusLimits",
    "FocusStage", "Found", "Probe", "SearchAutofocus", "SingleShotAutofocus", "StackAutofocus", "Strategy",
    "SweepAutofocus", "guarded_run", "make_strategy",
]
