"""ONNX export of a top-down pose model and an ONNX Runtime session to run it.

A heatmap model exports one output, ``heatmaps`` (N, K, h, w). An RTMPose model exports its SimCC logits
as two outputs, ``simcc_x`` (N, K, Wx) and ``simcc_y`` (N, K, Wy), as mmdeploy's RTMPose files have
them; :func:`run_onnx` returns them side by side on the last axis, the model's own output.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pose.topdown import codec_of

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
#: The output of a heatmap model's export (a SimCC model's are its codec's ``output_names``).
OUTPUT_NAME = "heatmaps"


class _SplitOutputs(nn.Module):
    """``model``'s one output split on the last axis into ``sizes`` (the SimCC x and y logits)."""

    def __init__(self, model: nn.Module, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.sizes = list(sizes)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(torch.split(self.model(x), self.sizes, dim=-1))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int] = (256, 256),
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Write ``model`` (images (N, 3, H, W) -> heatmaps (N, K, H/4, W/4), or the SimCC logits of an RTMPose
    model as ``simcc_x`` and ``simcc_y``) as ONNX with a dynamic batch axis.

    ``input_size`` is (width, height) in pixels. The file is written to a temporary name and renamed
    when complete. Uses the TorchScript-based exporter, which needs no extra package.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = input_size
    device = next(model.parameters()).device
    example = torch.zeros(1, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    tmp = path.with_name(path.name + ".part")
    codec = codec_of(model)
    names = list(codec.output_names)
    exported = model if len(names) == 1 else _SplitOutputs(model, codec.bins)
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                exported,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    logger.info("Wrote ONNX model %s", path)
    return path


def onnx_session(path: str | Path, device: str = "cpu", threads: int | None = None, spinning: bool = False):
    """An ``onnxruntime.InferenceSession`` for ``path`` on ``device`` ("cpu" or "cuda[:i]").

    ``spinning=False`` stops ONNX Runtime's worker threads from busy-waiting between runs, which
    on a small machine leaves the cores to the detector and the video threads (measured +20% FPS
    with two sessions on 2 cores).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # Denormals as zero, as PoseSettings.flush_denormal does for torch: small or freshly trained
    # networks underflow and would otherwise run many times slower on the CPU.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            logger.warning("onnxruntime has no CUDA provider here; running the pose model on the CPU")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def run_onnx(session, images: np.ndarray) -> np.ndarray:
    """Run an exported pose model: images (N, 3, H, W) float32 -> heatmaps (N, K, h, w) float32, or the
    outputs of a SimCC export concatenated on the last axis (N, K, Wx + Wy), as the torch model gives them."""
    outputs = session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
