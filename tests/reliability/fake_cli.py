"""The real ``animalpose`` command line in a process of its own, with stand-ins for the networks.

    python tests/reliability/fake_cli.py GT.json SECONDS_PER_FRAME -- track clip.mp4 --json r.json ...

The ground truth of a synthetic clip stands in for YOLO (a box per animal, one frame per call) and the
small reference HRNet for the pose model. Each detector call and each drawn video frame also sleeps
``SECONDS_PER_FRAME`` (the ONNX check of ``export`` 50 times that) so that a test can send a signal
while a chosen pass runs. Everything else (argument parsing, sources, the
pipeline, sinks, signal handling, exit codes) is the product's own code. Used by the reliability
corpus for what needs a real process: Ctrl-C, SIGTERM, temporary files and folders left behind.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMALL_POSE = ROOT / "tests" / "data" / "reference" / "hrnet_small" / "hrnet_small_ap10k.pth"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    import app.cli.video as cli_track
    import app.sinks.video as video_sink
    import pose.export
    from animalpose import Model
    from app.cli import main as animalpose
    from app.runs import Models
    from pose.estimator import PoseEstimator, PoseSettings
    from train.e2e import GroundTruthDetector

    gt_path, delay, separator, *args = argv
    if separator != "--":
        raise SystemExit("usage: fake_cli.py GT.json SECONDS_PER_FRAME -- ANIMALPOSE_ARGS...")
    detector = GroundTruthDetector(json.loads(Path(gt_path).read_text()), auto_advance=True)

    def slow_detector(image):
        time.sleep(float(delay))
        return detector(image)

    draw_frame, run_onnx = video_sink.draw_frame, pose.export.run_onnx

    def slow_draw(*draw_args, **kwargs):
        time.sleep(float(delay))
        return draw_frame(*draw_args, **kwargs)

    def slow_check(*check_args, **kwargs):
        time.sleep(50 * float(delay))
        return run_onnx(*check_args, **kwargs)

    video_sink.draw_frame, pose.export.run_onnx = slow_draw, slow_check
    estimator = PoseEstimator.from_weights(SMALL_POSE, PoseSettings(flip_test=False))
    cli_track.models_from_args = lambda _args, choices=None, live=False: Model(Models(slow_detector, estimator))
    return animalpose(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
