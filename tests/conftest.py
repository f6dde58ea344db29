"""Test-wide settings: never touch the network, keep CPU threads predictable."""

from __future__ import annotations

import os

# Must be set before transformers/huggingface_hub are imported anywhere in the test session:
# a hub lookup would otherwise hang ~22 s before failing on this offline machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
