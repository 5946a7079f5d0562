"""The KWS demo's keyword decisions: ``edgesdk.runtime.spotter`` (torch-free), re-exported here.

The spotter lives in the runtime so that device apps (``examples/jetson/kws_jetson.py``) need
only ``pip install edgesdk[runtime]``; its early-exit defaults were tuned by ``tune_early_exit.py``.
"""
from edgesdk.runtime.spotter import (  # noqa: F401 - the demo's names
    EARLY_EXIT_FRAMES,
    EARLY_EXIT_PROBABILITY,
    REFRACTORY_FRAMES,
    Detection,
    Spotter,
    is_filler,
    spot_wav,
)
