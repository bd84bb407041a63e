"""DeepLabCut's multi-animal pose files: ``.h5`` (pandas/PyTables, key ``df_with_missing``) and ``.csv``.

Both hold one table: a row per video frame (the index: frame numbers from 0), and columns under four
header levels, ``scorer`` (``animalpose``), ``individuals`` (``track_<id>``), ``bodyparts`` (the AP-10K
keypoint names) and ``coords`` (``x``, ``y``, ``likelihood``). Coordinates are pixels; NaN (an empty
CSV cell) where an animal is absent or a keypoint missing. DeepLabCut, movement
(``source_software="DeepLabCut"``) and ``pandas.read_hdf`` / ``read_csv(header=[0, 1, 2, 3], index_col=0)``
read them.
"""

from __future__ import annotations

from pathlib import Path

from app.sinks.base import SinkError
from app.sinks.tracks import PoseFileSink, PoseTable

#: The ``scorer`` of every column (DeepLabCut names the network there).
SCORER = "animalpose"
#: The HDF5 key DeepLabCut writes its table under (and readers look for).
HDF_KEY = "df_with_missing"
#: Level names of the column header, top to bottom.
HEADER_LEVELS: tuple[str, ...] = ("scorer", "individuals", "bodyparts", "coords")
EXTENSIONS: tuple[str, ...] = (".h5", ".csv")


def dlc_dataframe(table: PoseTable, scorer: str = SCORER):
    """``table`` (every frame from 0) as DeepLabCut's DataFrame: (frames, individuals x bodyparts x 3)."""
    import pandas as pd

    table = table.every_frame()
    columns = pd.MultiIndex.from_product(
        [[scorer], table.individuals, list(table.keypoint_names), ["x", "y", "likelihood"]], names=HEADER_LEVELS)
    values = table.keypoints.reshape(len(table), len(columns))
    return pd.DataFrame(values, index=pd.Index(table.frames), columns=columns)


def write_dlc(path: Path, table: PoseTable, suffix: str | None = None) -> None:
    """Write ``table`` as DeepLabCut's ``.h5`` or ``.csv`` (``suffix``, by default ``path``'s extension)."""
    frame = dlc_dataframe(table)
    if (suffix or path.suffix).lower() == ".csv":
        frame.to_csv(path)
    else:
        # "table" as DeepLabCut writes it; pandas writes an empty table only in the "fixed" format
        frame.to_hdf(path, key=HDF_KEY, format="table" if frame.size else "fixed", mode="w")


class DeepLabCutSink(PoseFileSink):
    """DeepLabCut's multi-animal ``.h5`` or ``.csv`` (by ``path``'s extension), written at the end.

    Raises:
        SinkError: another extension, or the packages of the ``formats`` extra are missing.
    """

    format_name = "the DeepLabCut format"

    @classmethod
    def modules(cls, path: Path) -> tuple[str, ...]:
        suffix = path.suffix.lower()
        if suffix not in EXTENSIONS:
            raise SinkError(f"cannot write {path}: a DeepLabCut file ends in .h5 or .csv, not {suffix!r}")
        return ("pandas", "tables") if suffix == ".h5" else ("pandas",)

    def write_file(self, path: Path, table: PoseTable) -> None:
        write_dlc(path, table, self.path.suffix)
