"""Embedding store, faiss search, FeatureProvider (vectors by raw item id) and exporters."""
