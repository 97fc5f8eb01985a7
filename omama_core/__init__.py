"""omama_core: O-MaMa object mask matching between egocentric and exocentric views.

    from omama_core import Matcher
    matcher = Matcher.from_config("default")
    results = matcher.match(source_image, source_masks, target_image)

Importing omama_core neither imports torch nor changes the environment: `Matcher`,
`MatchResult` and `Candidates` are loaded on first use, and the code that loads weights
switches hub downloads off just before (omama_core.network; OMAMA_ALLOW_NETWORK=1 keeps them).
"""

from .config import MatcherConfig, available_configs, load_config
from .errors import OmamaError

__version__ = "0.1.0"
__all__ = ["Candidates", "Matcher", "MatchResult", "MatcherConfig", "OmamaError", "available_configs", "load_config",
           "__version__"]
_LAZY = {"Matcher", "MatchResult", "Candidates"}  # in omama_core.matcher, which imports torch


def __getattr__(name: str):
    if name in _LAZY:
        from . import matcher

        return getattr(matcher, name)
    raise AttributeError(f"module 'omama_core' has no attribute {name!r}")
