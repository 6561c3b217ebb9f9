"""Thumbnail sheets: many small images in a few PNG files, written once and shared between runs.

A sheet holds ``SHEET x SHEET`` cells; thumbnail ``i`` of a set lies in sheet ``i // CELLS`` at
cell ``i % CELLS`` (row-major). The report's script draws a cell onto a canvas, so a page
with hundreds of thumbnails loads a handful of files, and two runs that show the same test
image (or the same coded query) load the same sheet.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

SHEET = 16  # cells per side
CELLS = SHEET * SHEET
MAX_SIDE = 64  # thumbnails are shrunk to at most this many pixels a side (small images keep their pixels)
BOX_SIDE = 96  # images with boxes drawn over them (localisation) get bigger cells: a box needs room


def cell_size(height: int, width: int, max_side: int = MAX_SIDE) -> Tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class SheetSet:
    """Thumbnails of one kind (a dataset's test images, or one code's coded queries) by integer id."""

    def __init__(self, name: str, height: int, width: int, max_side: int = MAX_SIDE):
        self.name = name  # folder under images/
        self.height, self.width = cell_size(height, width, max_side)
        self.cells: Dict[int, np.ndarray] = {}
        self.slots: Dict[int, int] = {}  # for coded queries: group id -> its dense slot
        self.workers = 1  # images per slot

    def __contains__(self, index: int) -> bool:
        return index in self.cells

    def add(self, index: int, image: np.ndarray) -> None:
        """``image``: uint8 ``(H, W, 3)``; shrunk to the cell size when larger."""
        if image.shape[:2] != (self.height, self.width):
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((self.width, self.height), Image.Resampling.BOX))
        self.cells[int(index)] = image

    def write(self, folder: Path) -> List[str]:
        """Write the sheets that hold at least one thumbnail; return their paths relative to ``folder``."""
        from PIL import Image

        by_sheet: Dict[int, List[int]] = {}
        for index in self.cells:
            by_sheet.setdefault(index // CELLS, []).append(index)
        written = []
        target = folder / "images" / self.name
        target.mkdir(parents=True, exist_ok=True)
        for sheet, indices in sorted(by_sheet.items()):
            canvas = np.full((SHEET * self.height, SHEET * self.width, 3), 255, dtype=np.uint8)
            for index in indices:
                row, col = divmod(index % CELLS, SHEET)
                canvas[row * self.height:(row + 1) * self.height, col * self.width:(col + 1) * self.width] = self.cells[index]
            buffer = io.BytesIO()
            Image.fromarray(canvas).save(buffer, format="PNG", compress_level=6)  # optimize=True costs 5x for ~5 %
            (target / f"s{sheet}.png").write_bytes(buffer.getvalue())
            written.append(f"images/{self.name}/s{sheet}.png")
        return written

    def manifest(self) -> dict:
        return {"path": f"images/{self.name}/", "h": self.height, "w": self.width, "sheet": SHEET}
