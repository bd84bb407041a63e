"""Checkpoint loading: reference outputs, key layouts, architecture inference, actionable errors."""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pose.checkpoint import (
    CheckpointError,
    filter_state_dict,
    infer_architecture,
    load_pose_checkpoint,
    load_pose_model,
    recorded_input_size,
    save_checkpoint,
)
from pose.codec import flip_back, merge_flip
from pose.keypoints import FLIP_INDEX
from pose.model import (
    ARCHITECTURES,
    BackboneKind,
    PoseArchitecture,
    RTMPoseArchitecture,
    RTMPoseModel,
    TopDownModel,
    build_model,
)

SMALL = ["hrnet_small", "resnet_small"]

EXPECTED_ARCH = {
    "hrnet_small": PoseArchitecture(BackboneKind.HRNET, widths=(8, 16, 32, 64)),
    "resnet_small": PoseArchitecture(
        BackboneKind.RESNET, stem_channels=16, base_channels=8, num_deconv_layers=3, deconv_channels=32
    ),
    "hrnet_w32_ap10k_256x256": PoseArchitecture(BackboneKind.HRNET, widths=(32, 64, 128, 256)),
    "hrnet_w48_ap10k_256x256": PoseArchitecture(BackboneKind.HRNET, widths=(48, 96, 192, 384)),
    "res50_ap10k_256x256": PoseArchitecture(BackboneKind.RESNET, layers=(3, 4, 6, 3), num_deconv_layers=3),
    "res101_ap10k_256x256": PoseArchitecture(BackboneKind.RESNET, layers=(3, 4, 23, 3), num_deconv_layers=3),
}


def _checkpoint_path(reference_dir: Path, name: str) -> Path:
    return reference_dir / name / f"{name}_ap10k.pth"


def _official_state_dict(reference_dir: Path, name: str) -> OrderedDict[str, torch.Tensor]:
    return torch.load(_checkpoint_path(reference_dir, name), weights_only=True)["state_dict"]


@pytest.fixture(scope="module", params=SMALL)
def loaded(request: pytest.FixtureRequest, reference_dir: Path) -> tuple[str, TopDownModel, PoseArchitecture]:
    model, arch = load_pose_model(_checkpoint_path(reference_dir, request.param))
    return request.param, model, arch


@pytest.fixture(scope="module")
def image(reference_dir: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(reference_dir / "preprocess" / "000000037516_input.npy"))


def _assert_close(actual: np.ndarray, reference: np.ndarray) -> None:
    np.testing.assert_allclose(actual, reference, rtol=0, atol=1e-4 * np.abs(reference).max())


def test_small_checkpoints_load_strictly(
    loaded: tuple[str, TopDownModel, PoseArchitecture], reference_dir: Path
) -> None:
    name, model, arch = loaded
    assert arch == EXPECTED_ARCH[name]
    assert not model.training
    official = _official_state_dict(reference_dir, name)
    ours = model.state_dict()
    assert list(ours) == list(official)
    assert all(torch.equal(ours[key], value) for key, value in official.items())


def test_heatmaps_match_reference(
    loaded: tuple[str, TopDownModel, PoseArchitecture], image: torch.Tensor, reference_dir: Path
) -> None:
    name, model, _ = loaded
    with torch.inference_mode():
        heatmaps = model(image).numpy()
    _assert_close(heatmaps, np.load(reference_dir / name / "heatmaps.npy"))


def test_flip_test_matches_reference(
    loaded: tuple[str, TopDownModel, PoseArchitecture], image: torch.Tensor, reference_dir: Path
) -> None:
    name, model, _ = loaded
    with torch.inference_mode():
        heatmaps = model(image).numpy()
        flipped_branch = flip_back(model(image.flip(3)).numpy(), FLIP_INDEX, shift=True)
    _assert_close(flipped_branch, np.load(reference_dir / name / "heatmaps_flipped_branch.npy"))
    _assert_close(merge_flip(heatmaps, flipped_branch), np.load(reference_dir / name / "heatmaps_flip.npy"))


@pytest.mark.parametrize("name", list(EXPECTED_ARCH))
def test_infer_architecture_from_manifests(name: str, reference_dir: Path) -> None:
    manifest = reference_dir / "state_dict_manifest" / f"{name}.json"
    if not manifest.exists():
        manifest = reference_dir / name / "state_dict_manifest.json"
    entries = json.loads(manifest.read_text())
    state_dict = {key: torch.empty(shape, device="meta") for key, shape, _ in entries}
    assert infer_architecture(state_dict) == EXPECTED_ARCH[name]


def _tensor_dict() -> dict[str, torch.Tensor]:
    return {"backbone.conv1.weight": torch.zeros(2), "keypoint_head.final_layer.bias": torch.ones(1)}


OUR_KEYS = ["backbone.conv1.weight", "keypoint_head.final_layer.bias"]


@pytest.mark.parametrize(
    ("obj", "expected_keys"),
    [
        (_tensor_dict(), OUR_KEYS),
        ({"state_dict": _tensor_dict(), "meta": {"epoch": 3}}, OUR_KEYS),
        ({"model": _tensor_dict(), "optimizer": {}}, OUR_KEYS),
        ({"state_dict": {f"module.{key}": value for key, value in _tensor_dict().items()}}, OUR_KEYS),
        ({"state_dict": {"backbone.conv1.weight": torch.zeros(2), "head.final_layer.bias": torch.ones(1)}}, OUR_KEYS),
        (
            {"backbone.conv1.weight": torch.zeros(2), "head.deconv_layers.0.weight": torch.ones(1), "step": 7},
            ["backbone.conv1.weight", "keypoint_head.deconv_layers.0.weight"],
        ),
        (
            {"state_dict": {"backbone.stem.0.conv.weight": torch.zeros(1), "head.final_layer.bias": torch.ones(1),
                            "head.cls_x.weight": torch.ones(1)}},
            ["backbone.stem.0.conv.weight", "head.final_layer.bias", "head.cls_x.weight"],
        ),
    ],
    ids=["bare", "state_dict", "model", "dataparallel", "mmpose1", "mmpose1+non_tensor", "rtmpose_keeps_head"],
)
def test_filter_state_dict_layouts(obj: dict, expected_keys: list[str]) -> None:
    assert list(filter_state_dict(obj)) == expected_keys


def test_filter_state_dict_leaves_input_unchanged() -> None:
    obj = {"state_dict": {"module.head.final_layer.bias": torch.ones(1)}}
    filter_state_dict(obj)
    assert list(obj["state_dict"]) == ["module.head.final_layer.bias"]


@pytest.mark.parametrize(
    "obj", [[1, 2], {"meta": {"epoch": 1}}, {"state_dict": {}}], ids=["list", "no_tensors", "empty"]
)
def test_filter_state_dict_rejects_non_state_dicts(obj: object) -> None:
    with pytest.raises(CheckpointError):
        filter_state_dict(obj)


def _mmpose1_layout(state_dict: dict[str, torch.Tensor]) -> dict:
    renamed = {key.replace("keypoint_head.", "head.", 1): value for key, value in state_dict.items()}
    return {"state_dict": renamed, "meta": {"mmpose_version": "1.3.2"}}


def _numpy_meta(state_dict: dict[str, torch.Tensor]) -> dict:
    # mmcv keeps evaluation scores as numpy scalars in meta['hook_msgs'].
    return {"state_dict": state_dict, "meta": {"hook_msgs": {"best_score": np.float64(0.7)}, "seed": np.int64(3)}}


def _save(obj: dict, path: Path) -> None:
    torch.save(obj, path)


def _save_like_mmpose_0x(obj: dict, path: Path) -> None:
    """Legacy (non-zip) format, as mmpose 0.x's publish_model wrote, with numpy 1.x's module names."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False, pickle_protocol=2)
    data = buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("wrap", "save"),
    [
        (lambda sd: sd, _save),
        (lambda sd: {"state_dict": {f"module.{key}": value for key, value in sd.items()}}, _save),
        (_mmpose1_layout, _save),
        (_numpy_meta, _save),
        (_numpy_meta, _save_like_mmpose_0x),
    ],
    ids=["bare", "dataparallel", "mmpose1", "numpy_meta", "legacy_numpy1_meta"],
)
def test_other_layouts_load(wrap, save, reference_dir: Path, tmp_path: Path) -> None:
    official = _official_state_dict(reference_dir, "resnet_small")
    path = tmp_path / "variant.pth"
    save(wrap(dict(official)), path)
    model, arch = load_pose_model(path)
    assert arch == EXPECTED_ARCH["resnet_small"]
    assert all(torch.equal(model.state_dict()[key], value) for key, value in official.items())


def test_save_checkpoint_round_trip(reference_dir: Path, tmp_path: Path) -> None:
    model, arch = load_pose_model(_checkpoint_path(reference_dir, "resnet_small"))
    path = tmp_path / "saved.pth"
    save_checkpoint(model, path, meta={"epoch": 5})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "meta"}
    assert raw["meta"] == {"epoch": 5}
    assert list(raw["state_dict"]) == list(_official_state_dict(reference_dir, "resnet_small"))
    reloaded, reloaded_arch = load_pose_model(path)
    assert reloaded_arch == arch
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    assert not path.with_name("saved.pth.tmp").exists()


def test_the_recorded_input_size_comes_back_with_the_model(reference_dir: Path, tmp_path: Path) -> None:
    model, arch = load_pose_model(_checkpoint_path(reference_dir, "hrnet_small"))
    assert load_pose_checkpoint(_checkpoint_path(reference_dir, "hrnet_small"))[2] is None  # mmpose records none
    save_checkpoint(model, tmp_path / "trained.pth", meta={"input_size": [96, 128]})
    reloaded, reloaded_arch, input_size = load_pose_checkpoint(tmp_path / "trained.pth")
    assert (reloaded_arch, input_size) == (arch, (96, 128))


@pytest.mark.parametrize(
    "checkpoint, expected",
    [
        ({"meta": {"input_size": [192, 256]}}, (192, 256)),
        ({"meta": {"settings": {"input_size": [128, 128]}}}, (128, 128)),  # our training's first checkpoints
        ({"meta": {"input_size": (64, 64), "settings": {"input_size": [128, 128]}}}, (64, 64)),
        ({"meta": {"epoch": 3}}, None),
        ({"state_dict": {}}, None),
        (OrderedDict(), None),
        ({"meta": {"input_size": [0, 256]}}, None),
        ({"meta": {"input_size": [130, 128]}}, None),
        ({"meta": {"input_size": "256x256"}}, None),
        ({"meta": {"input_size": [64, 64, 3]}}, None),
    ],
)
def test_recorded_input_size(checkpoint, expected) -> None:
    assert recorded_input_size(checkpoint) == expected


def test_a_channels_last_model_is_saved_in_standard_memory_order(reference_dir: Path, tmp_path: Path) -> None:
    model, _ = load_pose_model(_checkpoint_path(reference_dir, "hrnet_small"))
    model.to(memory_format=torch.channels_last)
    assert not all(v.is_contiguous() for v in model.state_dict().values())
    save_checkpoint(model, tmp_path / "saved.pth")
    saved = torch.load(tmp_path / "saved.pth", weights_only=True)["state_dict"]
    assert all(v.is_contiguous() for v in saved.values())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def _edit_drop(sd: dict) -> None:
    del sd["backbone.layer2.0.bn1.running_var"]


def _edit_add(sd: dict) -> None:
    sd["backbone.extra.weight"] = torch.zeros(1)


def _edit_stem(sd: dict) -> None:
    del sd["backbone.conv1.weight"]


def _edit_shape(sd: dict) -> None:
    sd["backbone.layer3.1.conv2.weight"] = torch.zeros(32, 32, 1, 1)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_edit_drop, ["missing keys 1", "backbone.layer2.0.bn1.running_var"]),
        (_edit_add, ["unexpected keys 1", "backbone.extra.weight"]),
        (_edit_stem, ["missing 'backbone.conv1.weight'", "not a Bottleneck ResNet"]),
        (_edit_shape, ["shape mismatches 1", "layer3.1.conv2.weight: file (32, 32, 1, 1), model (32, 32, 3, 3)"]),
    ],
    ids=["missing", "unexpected", "stem", "shape"],
)
def test_wrong_keys_are_named(edit, words: list[str], reference_dir: Path, tmp_path: Path) -> None:
    state_dict = dict(_official_state_dict(reference_dir, "resnet_small"))
    edit(state_dict)
    path = tmp_path / "edited.pth"
    torch.save({"state_dict": state_dict}, path)
    with pytest.raises(CheckpointError) as info:
        load_pose_model(path)
    message = str(info.value)
    assert "edited.pth" in message
    for word in words:
        assert word in message


def test_many_missing_keys_are_counted(reference_dir: Path, tmp_path: Path) -> None:
    official = _official_state_dict(reference_dir, "resnet_small")
    dropped = [key for key in official if key.endswith("running_mean")]
    path = tmp_path / "partial.pth"
    torch.save({key: value for key, value in official.items() if key not in dropped}, path)
    with pytest.raises(CheckpointError) as info:
        load_pose_model(path)
    message = str(info.value)
    assert f"missing keys {len(dropped)}: {', '.join(dropped[:5])}, ... ({len(dropped) - 5} more)" in message
    assert "unexpected" not in message


def _write_truncated(path: Path, reference_dir: Path) -> None:
    data = _checkpoint_path(reference_dir, "resnet_small").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_text(path: Path, reference_dir: Path) -> None:
    path.write_text("this is not a checkpoint\n")


def _write_empty(path: Path, reference_dir: Path) -> None:
    path.write_bytes(b"")


def _write_pickled_module(path: Path, reference_dir: Path) -> None:
    torch.save(build_model(EXPECTED_ARCH["resnet_small"]), path)


def _write_unknown_backbone(path: Path, reference_dir: Path) -> None:
    final = torch.zeros(17, 8, 1, 1)
    torch.save({"backbone.features.0.weight": torch.zeros(1), "keypoint_head.final_layer.weight": final}, path)


def _write_no_head(path: Path, reference_dir: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, path)


@pytest.mark.parametrize(
    ("write", "words"),
    [
        (_write_truncated, ["not a PyTorch checkpoint, or truncated"]),
        (_write_text, ["not a PyTorch checkpoint, or truncated"]),
        (_write_empty, ["not a PyTorch checkpoint, or truncated"]),
        (_write_pickled_module, ["Python objects other than tensors", "TopDownModel"]),
        (_write_unknown_backbone, ["neither an mmpose HRNet", "backbone.features.0.weight"]),
        (_write_no_head, ["keypoint_head.final_layer.weight", "conv.weight"]),
    ],
    ids=["truncated", "text", "empty", "pickled_module", "unknown_backbone", "no_head"],
)
def test_bad_files_raise_checkpoint_error(write, words: list[str], reference_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad_file.pth"
    write(path, reference_dir)
    with pytest.raises(CheckpointError) as info:
        load_pose_model(path)
    message = str(info.value)
    assert "bad_file.pth" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(("relative", "words"), [("missing.pth", "no such file"), (".", "not a file")])
def test_missing_paths_raise_checkpoint_error(relative: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / relative
    with pytest.raises(CheckpointError, match=words) as info:
        load_pose_model(str(path))
    assert str(path) in str(info.value)


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)


# --- RTMPose (mmpose 1.x, CSPNeXt + RTMCC) ------------------------------------------------------------------------

#: A small RTMPose for quick files: every part of RTMPose-m at a fraction of its width and depth.
RTMPOSE_SMALL = RTMPoseArchitecture(input_size=(64, 64), widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), stem_width=8,
                                    hidden_dims=16, attention_dims=8)


def test_infer_architecture_from_the_rtmpose_manifest(rtmpose_manifest) -> None:
    state_dict = {key: torch.empty(shape, device="meta") for key, shape, _ in rtmpose_manifest}
    assert infer_architecture(state_dict) == ARCHITECTURES["rtmpose_m"]


@pytest.mark.parametrize(
    "arch",
    [
        RTMPOSE_SMALL,
        RTMPoseArchitecture(input_size=(96, 64), widths=(8, 16, 24), depths=(2, 1, 3), stem_width=16, hidden_dims=8,
                            attention_dims=4, final_kernel=3, block_kernel=3, channel_attention=False,
                            expansion_factor=3, num_keypoints=5),
        RTMPoseArchitecture(input_size=(64, 96), widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), stem_width=8,
                            expand_ratio=0.25, hidden_dims=16, attention_dims=8),
        replace(ARCHITECTURES["rtmpose_tiny"], input_size=(96, 96)),  # as bench.e2e_synthetic trains it
    ],
    ids=["small", "three_stages", "portrait_thin_branches", "rtmpose_tiny"],
)
def test_rtmpose_architectures_are_read_back(arch: RTMPoseArchitecture) -> None:
    with torch.device("meta"):
        state_dict = build_model(arch).state_dict()
    assert infer_architecture(state_dict) == arch


@pytest.fixture(scope="module")
def small_rtmpose_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rtmpose") / "small.pth"
    save_checkpoint(build_model(RTMPOSE_SMALL), path, meta={"note": "test"})
    return path


def test_an_rtmpose_checkpoint_round_trips(small_rtmpose_file: Path) -> None:
    model, arch, input_size = load_pose_checkpoint(small_rtmpose_file)
    assert isinstance(model, RTMPoseModel) and arch == RTMPOSE_SMALL and input_size == (64, 64)
    saved = torch.load(small_rtmpose_file, weights_only=True)["state_dict"]
    assert list(saved) == list(model.state_dict()) and all(k.startswith(("backbone.", "head.")) for k in saved)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 17, 256)


def _rtm_drop(sd: dict) -> None:
    del sd["head.gau.ln.g"]


def _rtm_add(sd: dict) -> None:
    sd["head.gau.w"] = torch.zeros(7)


def _rtm_no_cls_y(sd: dict) -> None:
    del sd["head.cls_y.weight"]


def _rtm_tokens(sd: dict) -> None:
    sd["head.mlp.1.weight"] = torch.zeros(16, 9)


def _rtm_shape(sd: dict) -> None:
    sd["backbone.stage2.1.short_conv.conv.weight"] = torch.zeros(8, 8, 1, 1)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_rtm_drop, ["missing keys 1", "head.gau.ln.g"]),
        (_rtm_add, ["unexpected keys 1", "head.gau.w"]),
        (_rtm_no_cls_y, ["missing 'head.cls_y.weight'", "not an RTMCC head"]),
        (_rtm_tokens, ["64x64 input", "4 cells", "takes 9"]),
        (_rtm_shape, ["shape mismatches 1", "stage2.1.short_conv.conv.weight: file (8, 8, 1, 1), model (8, 16, 1, 1)"]),
    ],
    ids=["missing", "unexpected", "no_cls_y", "tokens", "shape"],
)
def test_wrong_rtmpose_keys_are_named(edit, words: list[str], small_rtmpose_file: Path, tmp_path: Path) -> None:
    state_dict = dict(torch.load(small_rtmpose_file, weights_only=True)["state_dict"])
    edit(state_dict)
    path = tmp_path / "edited.pth"
    torch.save({"state_dict": state_dict}, path)
    with pytest.raises(CheckpointError) as info:
        load_pose_model(path)
    message = str(info.value)
    assert "edited.pth" in message
    for word in words:
        assert word in message


def test_mmpose1_meta_with_numpy_arrays_loads_weights_only(rtmpose_dir: Path) -> None:
    """A file as mmengine publishes it (legacy format, numpy 1.x arrays in ``meta['dataset_meta']``) reads with
    ``weights_only``; this one holds two head tensors only, so it then fails on its keys, not on its pickle."""
    path = rtmpose_dir / "published_meta_only.pth"
    with pytest.raises(CheckpointError) as info:
        load_pose_model(path)
    message = str(info.value)
    assert "published_meta_only.pth" in message and "Python objects" not in message and "truncated" not in message
