"""Item vectors into other recommenders: `FeatureProvider` (id-aligned lookups from a store or a
distill run, memory-mapped at 10M items) and the exporters (`mllmrec export`; one module per format
under `exporters/`, one registry). Sits above distill because it reads distill runs too.

    provider.py    FeatureProvider: lookup / matrix / torch embedding by item id, missing-id policies
    export.py      run_export(cfg) -> manifest, verify_export; `main` is the CLI wrapper
    exporters/     mmrec, recbole, cornac, npy, parquet (+ base.Exporter, the registry)
    idmap.py       reading id lists and id-map files (MMRec i_id_mapping.csv ...)
    rowio.py       Arrow id columns and row lookups
    modules.py     torch modules over the vectors (FeatureProjection)
    to_cornac.py   Cornac modalities from a store
"""
