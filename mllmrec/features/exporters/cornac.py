"""cornac: the npy layout (`features.npy` + `ids.json`), ready for Cornac's FeatureModality /
ImageModality(features=np.load(...), ids=json.load(...)). From Python without files,
`index.to_cornac.cornac_modality()` builds the modality straight from a store."""

from __future__ import annotations

from mllmrec.features.exporters.npy import NpyExporter


class CornacExporter(NpyExporter):
    name = "cornac"
    help = "cornac (features.npy + ids.json for FeatureModality/ImageModality)"
