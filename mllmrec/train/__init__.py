"""Training data for item representations: co-interaction pairs (NoteLLM)."""
