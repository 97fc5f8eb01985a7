"""The selection stage (after the model): which scored candidate answers each query.

    stage.py    Selection: the configured rules in order; the default is the published rule
    rules.py    best score / whole object / part check, one object one mask, reverse check
    layout.py   the layout prior (an affine map fitted to the call's queries)
"""

from .stage import Selected, Selection

__all__ = ["Selected", "Selection"]
