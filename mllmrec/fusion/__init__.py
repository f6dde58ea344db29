"""Fusion of the LLM's multimodal vector with a directly pooled visual feature (NoteLLM-2)."""
