"""faiss search over a store's vectors: `mllmrec index` / `mllmrec neighbors` (cosine, flat / IVF /
HNSW, saved beside the store and refused when stale) and the raw inner-product index that serving
(`distill.recommend`) searches.

    search.py       build_index, NeighborIndex, neighbors, inner_product_index
    search_cli.py   the two commands' printing wrappers
    config.py       IndexConfig, NeighborsConfig
"""
