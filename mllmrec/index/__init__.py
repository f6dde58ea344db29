"""Embedding store, faiss search, and (later) the FeatureProvider and exporters."""
