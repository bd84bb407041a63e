"""The one source of truth for the AP-10K keypoint layout.

Values are copied from the official AP-10K dataset config (mmpose 0.19,
``configs/_base_/datasets/ap10k.py``) as recorded in
``shared/reference/ap10k_meta.json``; ``tests/pose/test_keypoints.py`` checks
them against that file (a copy lives in ``tests/data/reference``).

All indices are 0-based. The COCO-style AP-10K annotation files use a 1-based
skeleton; convert with ``SKELETON + 1`` when writing one.

Colours: the config's triples are kept verbatim. mmpose 0.x's visualiser
passes them unchanged to OpenCV drawing on a BGR image, so in mmpose renderings
they act as **BGR**; :func:`app`'s annotators do the same so our drawings look
like mmpose's.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS: int = 17

KEYPOINT_NAMES: tuple[str, ...] = (
    "L_Eye",
    "R_Eye",
    "Nose",
    "Neck",
    "Root of tail",
    "L_Shoulder",
    "L_Elbow",
    "L_F_Paw",
    "R_Shoulder",
    "R_Elbow",
    "R_F_Paw",
    "L_Hip",
    "L_Knee",
    "L_B_Paw",
    "R_Hip",
    "R_Knee",
    "R_B_Paw",
)

#: Left/right pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 1),
    (5, 8),
    (6, 9),
    (7, 10),
    (11, 14),
    (12, 15),
    (13, 16),
)


def _flip_index(pairs: tuple[tuple[int, int], ...], num_keypoints: int) -> np.ndarray:
    index = np.arange(num_keypoints)
    for a, b in pairs:
        index[a], index[b] = b, a
    return index


#: ``keypoints[..., FLIP_INDEX, :]`` relabels the keypoints of a mirrored animal.
FLIP_INDEX: np.ndarray = _flip_index(FLIP_PAIRS, NUM_KEYPOINTS)
FLIP_INDEX.setflags(write=False)

#: Links drawn between keypoints, in the config's order.
SKELETON: np.ndarray = np.array(
    [
        (0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (6, 7), (3, 8),
        (8, 9), (9, 10), (4, 11), (11, 12), (12, 13), (4, 14), (14, 15), (15, 16),
    ],
    dtype=np.int64,
)
SKELETON.setflags(write=False)

#: Per-keypoint OKS sigmas used by COCO evaluation and OKS-NMS.
SIGMAS: np.ndarray = np.array(
    [0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079,
     0.072, 0.062, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089],
    dtype=np.float64,
)
SIGMAS.setflags(write=False)

#: Per-keypoint loss weights of the config. AP-10K training does not apply them
#: (``use_different_joint_weights=False``); they are here for completeness.
JOINT_WEIGHTS: np.ndarray = np.array(
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2,
     1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5],
    dtype=np.float64,
)
JOINT_WEIGHTS.setflags(write=False)

#: Upper/lower body split as in the config (quirk kept: L_F_Paw is upper, R_F_Paw lower).
UPPER_BODY_IDS: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 7, 8, 9)
LOWER_BODY_IDS: tuple[int, ...] = (4, 10, 11, 12, 13, 14, 15, 16)

#: Keypoint colour triples, verbatim from the config (used as BGR when drawing).
KEYPOINT_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0),
    (255, 128, 0),
    (51, 153, 255),
    (51, 153, 255),
    (51, 153, 255),
    (51, 153, 255),
    (51, 153, 255),
    (0, 255, 0),
    (0, 255, 0),
    (255, 128, 0),
    (0, 255, 0),
    (255, 128, 0),
    (255, 128, 0),
    (0, 255, 0),
    (0, 255, 0),
    (0, 255, 0),
    (0, 255, 0),
)

#: Link colour triples, one per row of :data:`SKELETON` (used as BGR when drawing).
SKELETON_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 255),
    (0, 0, 255),
    (0, 0, 255),
    (0, 255, 0),
    (0, 255, 0),
    (0, 255, 255),
    (0, 255, 255),
    (0, 255, 255),
    (6, 156, 250),
    (6, 156, 250),
    (6, 156, 250),
    (0, 255, 255),
    (0, 255, 255),
    (0, 255, 255),
    (6, 156, 250),
    (6, 156, 250),
    (6, 156, 250),
)
