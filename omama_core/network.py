"""Keep third-party libraries from reaching for the network.

timm (through huggingface_hub) and ultralytics both try the network by default: a hub
download retries for up to minutes when there is no route, and importing ultralytics probes
DNS. omama loads every weight from local files, so the code that loads weights
(`backbone.DinoV2Backbone`, `proposals.FastSAMProposals`) calls `disable_hub_downloads()`
before it imports those libraries. Importing omama_core itself changes nothing. A user who
wants hub downloads sets OMAMA_ALLOW_NETWORK=1.
"""

import os
import tempfile


def disable_hub_downloads() -> None:
    """Set the environment so that timm and ultralytics never wait on a network (unless
    OMAMA_ALLOW_NETWORK=1). Values the user has set are kept."""
    if os.environ.get("OMAMA_ALLOW_NETWORK") == "1":
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # ultralytics writes a settings file at import; keep it out of the user's home if that
    # is not writable (CI, containers).
    if "YOLO_CONFIG_DIR" not in os.environ:
        default_dir = os.path.join(os.path.expanduser("~"), ".config", "Ultralytics")
        parent = os.path.dirname(default_dir)
        if not os.access(parent if os.path.isdir(parent) else os.path.expanduser("~"), os.W_OK):
            os.environ["YOLO_CONFIG_DIR"] = os.path.join(tempfile.gettempdir(), "omama-ultralytics")
