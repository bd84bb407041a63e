"""Regenerate the RTMPose-m reference outputs with mmpose 1.3.2 itself (see README.md here).

Run from the repository root with the interpreter of the separate mmpose 1.x environment:

    nice /root/venvs/mmpose1/bin/python tests/data/reference/rtmpose_m/make_reference.py

It builds the official AP-10K RTMPose-m config with ``init_model`` (no checkpoint), loads the seeded
random weights of ``random_weights.py`` strictly, gives them BN statistics of the reference crops
(:func:`calibrate_batchnorm`, written to ``bn_stats.npz``), and for each case of :data:`CASES` records
what mmpose 1.x computes on the real AP-10K sample images: center/scale, the affine matrix, the crop,
a digest of the normalised network input, the SimCC logits (plain and flip-test merged) and the
keypoints of ``inference_topdown`` with and without the flip test. Nothing of mmpose is copied here:
this only calls it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
SAMPLES = ROOT / "tests" / "data" / "samples" / "ap10k"
CONFIG = "animal_2d_keypoint/rtmpose/ap10k/rtmpose-m_8xb64-210e_ap10k-256x256.py"

sys.path.insert(0, str(HERE))
from random_weights import SEED, digest, random_state_dict, uniform

#: (name, image, box, box format, dtype of the array handed to ``inference_topdown``). The xywh boxes
#: are what ``animalpose pose --box X,Y,W,H`` gets; mmpose is called with ``[[X, Y, X+W, Y+H]]`` (Python
#: floats, so float64) as the issue states. The float32 xyxy box is a detector box.
CASES = [
    ("jaguar_gt", "000000037516.jpg", [66.0, 192.0, 1092.0, 512.0], "xywh", "float64"),
    ("jaguar_tall", "000000037516.jpg", [100.25, 80.5, 300.75, 410.125], "xywh", "float64"),
    ("jaguar_edge", "000000037516.jpg", [-50.5, 600.0, 400.0, 400.0], "xywh", "float64"),
    ("antelope_gt", "000000000004.jpg", [408.0, 197.0, 429.0, 341.0], "xywh", "float64"),
    ("antelope_det", "000000000004.jpg", [400.3, 190.7, 842.9, 545.1], "xyxy", "float32"),
]


class _StandInOps(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``mmcv.ops`` for mmcv-lite, which has no compiled ops: any name imported from it is a class that
    refuses to be built. RTMPose needs none of them; mmpose and mmdet import some at module level."""

    def find_spec(self, name, path=None, target=None):
        if name == "mmcv.ops" or name.startswith("mmcv.ops."):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []

        def missing(attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def refuse(*args, **kwargs):
                raise RuntimeError(f"mmcv.ops.{attr} is not available (mmcv-lite)")

            return type(attr, (), {"__init__": refuse, "__call__": refuse})

        module.__getattr__ = missing


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _xyxy(box: list[float], box_format: str, dtype: str) -> np.ndarray:
    x1, y1, a, b = box
    values = [x1, y1, x1 + a, y1 + b] if box_format == "xywh" else [x1, y1, a, b]
    return np.array([values], dtype=dtype)


def _top_gap(logits: np.ndarray) -> float:
    """Smallest difference between the largest and second largest logit of any (instance, keypoint)."""
    top = np.sort(logits, axis=-1)[..., -2:]
    return float((top[..., 1] - top[..., 0]).min())


def _inputs(model, pipeline, case) -> tuple[dict, dict]:
    """The pipeline's output for one case and the data preprocessor's batch of it."""
    from mmengine.dataset import pseudo_collate

    _, image_name, box, box_format, dtype = case
    data = pipeline(dict(img_path=str(SAMPLES / image_name), bbox=_xyxy(box, box_format, dtype),
                         bbox_score=np.ones(1, np.float32), **model.dataset_meta))
    return data, model.data_preprocessor(pseudo_collate([data]), False)


def calibrate_batchnorm(model, inputs: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Give the random network BN statistics of real crops, so that its outputs depend on the image.

    With drawn statistics the activations fade and every crop gives the same logits. One train-mode pass
    over ``inputs`` (cumulative averages) sets each BN's running mean and variance to those of its real
    input; they are then perturbed (mean += 0.2 std U, var *= U(0.7, 1.5), U of unit variance) from the
    raw stream of PCG64(``seed``) so that they are not exactly the batch statistics. Returns the new
    statistics by state-dict key, float32.
    """
    norms = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for module in norms.values():
        module.reset_running_stats()
        module.momentum = None
        module.train()
    with torch.no_grad():
        model.extract_feat(inputs)
    model.eval()
    bits = np.random.PCG64(seed)
    assert norms, "no BN layers found"
    stats = {}
    for name, module in norms.items():
        mean = module.running_mean.double().numpy()
        var = module.running_var.double().numpy()
        mean = mean + 0.2 * np.sqrt(var) * (2.0 * uniform(bits, mean.size) - 1.0) * np.sqrt(3.0)
        var = var * (0.7 + 0.8 * uniform(bits, var.size))
        stats[f"{name}.running_mean"] = mean.astype(np.float32)
        stats[f"{name}.running_var"] = var.astype(np.float32)
    return stats


def main() -> None:
    sys.meta_path.insert(0, _StandInOps())
    import mmcv
    import mmengine
    import mmpose
    from mmengine.dataset import Compose
    from mmpose.apis import inference_topdown, init_model
    from mmpose.models.utils.tta import flip_vectors
    from mmpose.structures.bbox import get_warp_matrix

    config = Path(mmpose.__file__).parent / ".mim" / "configs" / CONFIG
    model = init_model(str(config), None, device="cpu")
    torch.set_num_threads(1)
    weights = random_state_dict()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    assert list(model.state_dict()) == list(weights), "key order differs from the manifest"
    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)  # as inference_topdown builds it
    crops = torch.cat([_inputs(model, pipeline, case)[1]["inputs"] for case in CASES])
    stats = calibrate_batchnorm(model, torch.cat([crops, crops.flip(-1)]), SEED + 1)
    np.savez_compressed(HERE / "bn_stats.npz", **stats)
    weights.update(stats)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    model.eval()

    record: dict = {
        "versions": {
            "mmpose": mmpose.__version__, "mmengine": mmengine.__version__, "mmcv": mmcv.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
        },
        "config": CONFIG,
        "seed": SEED,
        "bn_seed": SEED + 1,
        "weights_sha256": digest(weights),
        "test_cfg": dict(model.test_cfg),
        "codec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.cfg.codec.items()},
        "cases": [],
    }
    logits: dict[str, np.ndarray] = {}
    for case in CASES:
        name, image_name, box, box_format, dtype = case
        image_path = str(SAMPLES / image_name)
        bboxes = _xyxy(box, box_format, dtype)
        data, batch = _inputs(model, pipeline, case)
        inputs = batch["inputs"]
        meta = batch["data_samples"][0].metainfo
        with torch.no_grad():
            x, y = model.head.forward(model.extract_feat(inputs))
            xf, yf = model.head.forward(model.extract_feat(inputs.flip(-1)))
        xf, yf = flip_vectors(xf, yf, flip_indices=meta["flip_indices"])
        merged_x, merged_y = (x + xf) * 0.5, (y + yf) * 0.5

        results = {}
        for flip in (True, False):
            model.test_cfg["flip_test"] = flip
            # The call: a list of boxes for the image file (float32 arrays for detector boxes).
            arg = bboxes.tolist() if dtype == "float64" else bboxes
            (sample,) = inference_topdown(model, image_path, bboxes=arg, bbox_format="xyxy")
            results[flip] = sample.pred_instances
        model.test_cfg["flip_test"] = True
        # The hand-run network must be what inference_topdown ran.
        decoded, _ = model.head.decoder.decode(merged_x[0].numpy(), merged_y[0].numpy())
        centre, scale = meta["input_center"], meta["input_scale"]
        by_hand = (decoded[..., :2] / meta["input_size"] * scale + centre - 0.5 * scale).astype(np.float32)
        np.testing.assert_array_equal(by_hand, results[True].keypoints)

        crop = data["inputs"].numpy().transpose(1, 2, 0)  # the warped BGR crop, HWC uint8
        cv2.imwrite(str(HERE / f"{name}_crop.png"), crop)
        for key, value in (("x", x), ("y", y), ("x_flip", merged_x), ("y_flip", merged_y)):
            logits[f"{name}_{key}"] = value[0].numpy()
        warp = get_warp_matrix(centre, scale, 0.0, output_size=meta["input_size"])
        record["cases"].append({
            "name": name,
            "image": image_name,
            "box": box,
            "box_format": box_format,
            "dtype": dtype,
            "bbox_xyxy": bboxes[0].tolist(),
            "input_center": np.asarray(centre).tolist(),
            "input_scale": np.asarray(scale).tolist(),
            "center_dtype": str(np.asarray(centre).dtype),
            "warp_matrix": warp.tolist(),
            "crop": f"{name}_crop.png",
            "crop_sha256": _sha256(crop),
            "input_sha256": _sha256(inputs[0].numpy().astype("<f4")),
            "input_sum": float(inputs[0].double().sum()),
            "keypoints_flip": results[True].keypoints[0].tolist(),
            "scores_flip": results[True].keypoint_scores[0].tolist(),
            "keypoints": results[False].keypoints[0].tolist(),
            "scores": results[False].keypoint_scores[0].tolist(),
            "logit_range": [float(min(x.min(), y.min())), float(max(x.max(), y.max()))],
            "min_top_gap": _top_gap(np.concatenate([x.numpy(), y.numpy()], -1).reshape(-1, 512)),
            "min_top_gap_flip": _top_gap(np.concatenate([merged_x.numpy(), merged_y.numpy()], -1).reshape(-1, 512)),
        })
        print(name, "keypoints[0]", results[True].keypoints[0, 0], "gap", record["cases"][-1]["min_top_gap"])

    np.savez_compressed(HERE / "simcc_logits.npz", **logits)
    # A checkpoint as mmengine publishes one, less the weights: the meta (with numpy arrays pickled under
    # numpy 1.x's module names) and two small head tensors, in torch's legacy (non-zip) format.
    meta = {
        "dataset_meta": model.dataset_meta, "seed": 21, "experiment_name": "reference", "epoch": 210,
        "iter": 0, "mmengine_version": mmengine.__version__, "cfg": "(config text)", "time": "20230206",
    }
    head = {k: torch.from_numpy(weights[k]) for k in ("head.gau.gamma", "head.gau.beta")}
    torch.save({"meta": meta, "state_dict": head}, HERE / "published_meta_only.pth",
               _use_new_zipfile_serialization=False)
    (HERE / "reference.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
