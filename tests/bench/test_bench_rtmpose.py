"""bench.rtmpose's measurement: interleaved rounds, an untimed call before the timed ones, per-crop times."""

import numpy as np

import bench.rtmpose as rtmpose
from pose.estimator import Backend


class _CountingEstimator:
    def __init__(self, log: list, key: tuple) -> None:
        self.log, self.key = log, key

    def infer(self, images: np.ndarray) -> np.ndarray:
        self.log.append((*self.key, len(images)))
        return images


def test_each_round_calls_every_key_once_untimed_then_repeats_times(monkeypatch):
    log: list = []
    monkeypatch.setattr(rtmpose, "_estimators",
                        lambda name: {b: _CountingEstimator(log, (name, b)) for b in rtmpose.BACKENDS})
    wall, cpu = rtmpose.measure([1, 2], rounds=2, warmup=1, repeats=3)
    keys = [(m, b, n) for m in rtmpose.MODELS for b in rtmpose.BACKENDS for n in (1, 2)]
    assert set(wall) == set(cpu) == set(keys)
    warm = len(keys)
    rounds = log[warm:]
    assert len(rounds) == 2 * len(keys) * 4  # per round and key: one untimed call and three timed ones
    first = rounds[:len(keys) * 4]
    assert first == [key for key in keys for _ in range(4)]  # in blocks: the untimed call right before its own
    assert all(v >= 0 for v in wall.values())


def test_render_names_the_target_and_the_calls():
    keys = [(m, b, n) for m in rtmpose.MODELS for b in rtmpose.BACKENDS for n in (1,)]
    wall = {k: (0.024 if k[0] == "rtmpose_m" else 0.08) for k in keys}
    text = rtmpose.render(wall, wall, [1], 0.001, 0.0001, (0.5, 0.6), rounds=4, repeats=3)
    assert "median of 4 interleaved rounds of one untimed and 3 timed calls each" in text
    assert "24.0 ms, met" in text and Backend.ONNXRUNTIME.value in text
