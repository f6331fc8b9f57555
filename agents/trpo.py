"""Trust region policy optimization (Schulman et al. 2015).

TRPO *is* NPG with a backtracking line search on the KL constraint (docs/theory.md#npg-trpo,
docs/theory.md#line-search): the step δθ* is shrunk by ``backtrack_coef``^k until the surrogate improves and
KL(π_old‖π_θ) ≤ ``max_kl``; if no k < ``max_backtracks`` qualifies the parameters are restored
bit-exactly. Nothing but the default of ``actor.optim.line_search`` differs from NPG.
"""

from __future__ import annotations

from agents.npg import NPG


class TRPO(NPG):
    """NPG whose trust-region step runs a line search (unless the config turns it off)."""

    name = "trpo"
    line_search_default = True
