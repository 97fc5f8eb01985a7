"""omama_core: O-MaMa object mask matching between egocentric and exocentric views.

    from omama_core import Matcher
    matcher = Matcher.from_config("default")
    results = matcher.match(source_image, source_masks, target_image)

Importing omama_core switches hub downloads off (see omama_core.offline): every weight is
loaded from a local file. Set OMAMA_ALLOW_NETWORK=1 to let timm use its hub.
"""

from .offline import configure_offline

configure_offline()

from .config import MatcherConfig, available_configs, load_config  # noqa: E402
from .errors import OmamaError  # noqa: E402
from .matcher import Matcher, MatchResult  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Matcher", "MatchResult", "MatcherConfig", "OmamaError", "available_configs", "load_config", "__version__"]
