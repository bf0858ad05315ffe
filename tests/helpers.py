"""Helpers shared by the test modules."""
import contextlib
import io

import torch
from torch import nn

from posekit.cli import main
from posekit.models.hrnet import HRNetSpec, StageSpec

# An HRNet small enough for fast CPU tests: one block per branch, widths 8-64.
TINY = HRNetSpec(1, (StageSpec(1, (1, 1), (8, 16)), StageSpec(1, (1, 1, 1), (8, 16, 32)),
                     StageSpec(1, (1, 1, 1, 1), (8, 16, 32, 64))))


def run_cli(argv, capsys):
    """Run the ``posekit`` command in-process; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def calibrate(model, size, seed=0):
    """Kaiming weights and BN statistics of a random batch, so outputs are of order one."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, *size))
    return model.eval()


def pycocotools_stats(gt_path, results):
    """The official evaluator's 10 keypoint numbers (AP, AP50, ..., ARl) for a results list."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        evaluation = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats
