"""Regenerate the SimCC training references with mmpose 1.3.2 itself (see README.md here).

Run from the repository root with the interpreter of the separate mmpose 1.x environment:

    nice /root/venvs/mmpose1/bin/python tests/data/reference/simcc_training/make_reference.py

It calls mmpose's ``SimCCLabel.encode`` (``smoothing_type='gaussian'``, ``normalize=False``) on
keypoints chosen to reach every branch (inside, rounding halves to even, a Gaussian partly inside
the bins, wholly outside, unlabelled, a visibility under 0.5), as the RTMPose AP-10K config sets it up
(256x256, sigma (5.66, 5.66), split ratio 2.0) and at a non-square size with the 256x192 configs'
sigma; and mmpose's ``KLDiscretLoss`` (``beta=10``, ``label_softmax=True``, ``use_target_weight=True``,
as the config) on small seeded logits, with the gradient of the logits. Nothing of mmpose is copied
here: this only calls it. Writes ``simcc_reference.npz`` (compressed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rtmpose_m"))
from make_reference import _StandInOps  # noqa: E402  (mmcv-lite has no compiled mmcv.ops)

#: (K, 3): x, y in input pixels and the visibility handed to the encoder.
KEYPOINTS_256 = np.array([
    [100.3, 57.8, 1.0],    # inside
    [10.25, 200.75, 1.0],  # x * 2 = 20.5 rounds to 20, y * 2 = 401.5 to 402 (halves to even)
    [-5.0, 128.0, 1.0],    # bin -10: the Gaussian's right tail is inside, kept
    [-9.0, 30.0, 1.0],     # bin -18: wholly left of the bins, weight 0
    [263.0, 40.0, 1.0],    # bin 526: its left tail is inside, kept
    [265.0, 40.0, 1.0],    # bin 530: wholly right, weight 0
    [50.0, 60.0, 0.0],     # unlabelled
    [128.0, 300.0, 1.0],   # y bin 600: wholly below, weight 0
    [64.0, 64.0, 0.4],     # visibility under 0.5: no target, the weight stays 0.4
], np.float32)


def encode(input_size: tuple[int, int], sigma: tuple[float, float], keypoints: np.ndarray) -> dict:
    from mmpose.codecs import SimCCLabel

    codec = SimCCLabel(input_size=input_size, smoothing_type="gaussian", sigma=sigma, simcc_split_ratio=2.0,
                       normalize=False, use_dark=False)
    return codec.encode(keypoints[None, :, :2].copy(), keypoints[None, :, 2].copy())


def main() -> None:
    sys.meta_path.insert(0, _StandInOps())
    from mmpose.models.losses import KLDiscretLoss

    out: dict[str, np.ndarray] = {}
    square = encode((256, 256), (5.66, 5.66), KEYPOINTS_256)
    out.update(square_keypoints=KEYPOINTS_256, square_x=square["keypoint_x_labels"],
               square_y=square["keypoint_y_labels"], square_weights=square["keypoint_weights"])

    rng = np.random.default_rng(24)
    tall = np.concatenate([rng.uniform(-10, 200, (4, 1)), rng.uniform(-10, 266, (4, 1)), np.ones((4, 1))],
                          axis=1).astype(np.float32)
    wide = encode((192, 256), (4.9, 5.66), tall)
    out.update(tall_keypoints=tall, tall_x=wide["keypoint_x_labels"], tall_y=wide["keypoint_y_labels"],
               tall_weights=wide["keypoint_weights"])

    # The loss on (N, K) = (2, 4) logits over 24 x and 20 y bins, targets as SimCCLabel makes them.
    small = np.concatenate([rng.uniform(0, 12, (8, 1)), rng.uniform(0, 10, (8, 1)), np.ones((8, 1))], axis=1)
    targets = encode((12, 10), (1.5, 1.5), small.astype(np.float32))
    target_x = targets["keypoint_x_labels"].reshape(2, 4, 24)
    target_y = targets["keypoint_y_labels"].reshape(2, 4, 20)
    weights = np.array([[1.0, 0.0, 1.0, 0.5], [1.0, 1.0, 0.0, 1.0]], np.float32)
    generator = torch.Generator().manual_seed(24)
    logits_x = (torch.randn(2, 4, 24, generator=generator) * 0.5).requires_grad_()
    logits_y = (torch.randn(2, 4, 20, generator=generator) * 0.5).requires_grad_()
    loss = KLDiscretLoss(beta=10.0, label_softmax=True, use_target_weight=True)(
        (logits_x, logits_y), (torch.from_numpy(target_x), torch.from_numpy(target_y)), torch.from_numpy(weights))
    loss.backward()
    out.update(loss_logits_x=logits_x.detach().numpy(), loss_logits_y=logits_y.detach().numpy(),
               loss_target_x=target_x, loss_target_y=target_y, loss_weights=weights,
               loss=np.array(loss.item(), np.float64), loss_grad_x=logits_x.grad.numpy(),
               loss_grad_y=logits_y.grad.numpy())
    np.savez_compressed(HERE / "simcc_reference.npz", **out)
    print(f"loss {loss.item():.8f}; square weights {square['keypoint_weights'].tolist()}")


if __name__ == "__main__":
    main()
