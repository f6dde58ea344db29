"""Small trained heads saved as safetensors + a JSON of their constructor arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn


class SavedHead(nn.Module):
    """A head whose weights go to `WEIGHTS` and whose constructor arguments (`config()`) to `CONFIG`."""

    WEIGHTS: str
    CONFIG: str

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(d / self.WEIGHTS)
        )
        (d / self.CONFIG).write_text(json.dumps(self.config()))

    @classmethod
    def load(cls, directory: str | Path) -> Any:
        from safetensors.torch import load_file

        d = Path(directory)
        head = cls(**json.loads((d / cls.CONFIG).read_text()))
        head.load_state_dict(load_file(str(d / cls.WEIGHTS)))
        return head.eval()

    @classmethod
    def present(cls, directory: str | Path) -> bool:
        return (Path(directory) / cls.CONFIG).is_file()
