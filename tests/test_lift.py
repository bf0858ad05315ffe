"""3D pose machine: shapes, LSTM state carry-over, input normalisation, test-time correction."""
import copy

import numpy as np
import pytest
import torch

from posekit.errors import PosekitError
from posekit.lift import build_lifter
from posekit.lift.correction import CorrectionSettings, self_supervised_correction
from posekit.lift.model import FeaturePoseMachine3D, KeypointLifter, Projector, cpm_trunk, normalize_keypoints
from posekit.skeletons import get_skeleton

SKELETON = get_skeleton("h36m17")
ROBUST = [SKELETON.index(n) for n in ("pelvis", "left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def small_projector(seed=0) -> Projector:
    torch.manual_seed(seed)
    projector = Projector(17, hidden=32, width=32)
    with torch.no_grad():  # non-trivial batch-norm statistics, so inference-mode batch norm is exercised
        for bn in (projector.c_bn, projector.p_bn0, projector.p_bn1, projector.p_bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
    return projector.eval()


def test_shapes():
    lifter = KeypointLifter(17, width=32)
    out, (h, c) = lifter(torch.randn(3, 5, 53))
    assert out.shape == (3, 5, 17, 3) and h.shape == (2, 3, 32) and c.shape == (2, 3, 32)
    features = FeaturePoseMachine3D(17, width=32)
    out, _ = features(torch.randn(1, 2, 128, 46, 46), features=True)
    assert out.shape == (1, 2, 17, 3)
    # 46 -> 23 -> 12 (5x5 stride-2 convs, padding 2) -> 6 (2x2 pool): FC input 128 * 6 * 6
    assert features.adapter[1].in_features == 128 * 6 * 6
    # Table 1 trunk: three stride-2 pools, 128 channels out (368 -> 46; 96 -> 12 here, for speed)
    with torch.no_grad():
        assert cpm_trunk()(torch.zeros(1, 3, 96, 96)).shape == (1, 128, 12, 12)
    model = build_lifter({"joints": 17, "width": 32, "projector_hidden": 16, "projector_width": 24})
    p3d, corrected, projected, _ = model(torch.randn(2, 4, 53))
    assert p3d.shape == corrected.shape == (2, 4, 17, 3) and projected.shape == (2, 4, 17, 2)
    fc = KeypointLifter(17, width=32, temporal="fc")
    out, state = fc(torch.randn(2, 4, 53))
    assert out.shape == (2, 4, 17, 3) and state is None


def test_lstm_state_carry_over_equals_one_pass():
    torch.manual_seed(1)
    lifter = KeypointLifter(17, width=24).eval()
    sequence = torch.randn(2, 23, 53)
    with torch.no_grad():
        whole, _ = lifter(sequence)
        parts, state = [], None
        for start, stop in ((0, 5), (5, 6), (6, 17), (17, 23)):
            out, state = lifter(sequence[:, start:stop], state)
            parts.append(out)
        fresh, _ = lifter(sequence[:, 17:23])
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fresh, whole[:, 17:23], atol=1e-3)  # the state matters


def test_normalize_keypoints_hand_computed():
    kp = np.zeros((17, 2))
    kp[SKELETON.index("pelvis")] = (110.0, 220.0)
    kp[SKELETON.index("head")] = (110.0, 180.0)   # 40 px above the pelvis
    kp[SKELETON.index("left_wrist")] = (140.0, 220.0)  # 30 px right
    scores = np.zeros(17)
    scores[[SKELETON.index("pelvis"), SKELETON.index("head"), SKELETON.index("left_wrist")]] = [1.0, 0.8, 0.5]
    out = normalize_keypoints(kp, scores, (201, 401))
    rms = np.sqrt((40.0 ** 2 + 30.0 ** 2) / 3)  # over the 3 visible joints (pelvis at distance 0)
    xy = out[:34].reshape(17, 2)
    np.testing.assert_allclose(xy[SKELETON.index("head")], [0.0, -40.0 / rms], rtol=1e-6)
    np.testing.assert_allclose(xy[SKELETON.index("left_wrist")], [30.0 / rms, 0.0], rtol=1e-6)
    assert np.all(xy[scores == 0] == 0) and np.all(out[34:51][scores == 0] == 0)
    np.testing.assert_allclose(out[34:51][scores > 0], [1.0, 0.8, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out[51:], [(110 - 100) / 201, (220 - 200) / 201], rtol=1e-6)
    # same person moved and scaled in the image: same normalised pose
    moved = normalize_keypoints(kp * 2 + 7, scores, (201, 401))
    np.testing.assert_allclose(moved[:51], out[:51], rtol=1e-5, atol=1e-6)
    # missing pelvis: centred on the visible joints' mean, no NaN from the NaN coordinates
    kp_nan = kp.copy()
    kp_nan[SKELETON.index("right_knee")] = np.nan
    scores2 = scores.copy()
    scores2[SKELETON.index("pelvis")] = 0
    out2 = normalize_keypoints(kp_nan, scores2, (201, 401))
    assert np.isfinite(out2).all()
    xy2 = out2[:34].reshape(17, 2)
    np.testing.assert_allclose(xy2[SKELETON.index("head")] + xy2[SKELETON.index("left_wrist")], 0.0, atol=1e-6)


def reference_correction(projector, p3d, target, weights, steps, lr, optimizer, update):
    """One frame at a time with a deep copy of the projector and torch's own optimizer."""
    outputs = []
    for frame in range(len(p3d)):
        copy_ = copy.deepcopy(projector).eval()
        params = []
        if "correct" in update:
            params += [p for n, p in copy_.named_parameters() if n.startswith("c_")]
        if "project" in update:
            params += [p for n, p in copy_.named_parameters() if n.startswith("p_")]
        opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr))
        trajectory = []
        x = p3d[frame].reshape(1, -1)
        with torch.no_grad():
            trajectory.append(copy_.correct(x).reshape(17, 3).clone())
        for _ in range(steps):
            opt.zero_grad()
            projected = copy_.project(copy_.correct(x)).reshape(17, 2)
            loss = (((projected - target[frame]) ** 2).sum(-1) * weights[frame]).sum()
            loss.backward()
            opt.step()
            with torch.no_grad():
                trajectory.append(copy_.correct(x).reshape(17, 3).clone())
        outputs.append(torch.stack(trajectory))
    return torch.stack(outputs)  # (F, steps + 1, 17, 3)


@pytest.mark.parametrize("optimizer,update,lr", [("adam", ("correct", "project"), 2e-3),
                                                 ("sgd", ("correct",), 5e-3)])
def test_correction_matches_per_frame_copies(optimizer, update, lr):
    projector = small_projector()
    torch.manual_seed(3)
    p3d = torch.randn(5, 17, 3) * 0.3
    target = torch.randn(5, 17, 2)
    weights = torch.rand(5, 17)
    weights[0, :4] = 0
    expected = reference_correction(projector, p3d, target, weights, 2, lr, optimizer, update)
    settings = CorrectionSettings(steps=2, epsilon_mm=0.0, tau_mm=1e9, optimizer=optimizer, lr=lr,
                                  update=update, chunk=2)
    result = self_supervised_correction(projector, p3d, target, weights, settings)
    np.testing.assert_allclose(result["initial"], expected[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(result["pose"], expected[:, 2].numpy(), atol=2e-5)
    assert (result["steps"] == 2).all() and not result["discarded"].any()
    assert np.abs(result["pose"] - result["initial"]).max() > 1e-3  # the correction did something
    before = {k: v.clone() for k, v in projector.state_dict().items()}
    for key, value in projector.state_dict().items():  # the shared weights are untouched
        torch.testing.assert_close(value, before[key])


def test_correction_stops_and_discards_by_epsilon_and_tau():
    projector = small_projector(5)
    torch.manual_seed(4)
    p3d = torch.randn(4, 17, 3) * 0.3
    target = torch.randn(4, 17, 2) * 2
    weights = torch.ones(4, 17)
    lr = 3e-3
    trajectory = reference_correction(projector, p3d, target, weights, 2, lr, "adam", ("correct", "project"))
    robust = trajectory[:, :, ROBUST]
    move1 = (robust[:, 1] - robust[:, 0]).norm(dim=-1).mean(-1).numpy() * 1000  # mm, step 1
    move2 = (robust[:, 2] - robust[:, 1]).norm(dim=-1).mean(-1).numpy() * 1000
    drift2 = (robust[:, 2] - robust[:, 0]).norm(dim=-1).mean(-1).numpy() * 1000
    assert (move1 > 0.5).all()

    def run(epsilon, tau, reference="initial"):
        return self_supervised_correction(projector, p3d, target, weights, CorrectionSettings(
            steps=2, epsilon_mm=epsilon, tau_mm=tau, lr=lr, reference=reference))

    # epsilon above every first move: all frames converge after one step and keep that step's pose
    result = run(move1.max() + 1, 1e9)
    assert result["converged"].all() and (result["steps"] == 1).all() and not result["discarded"].any()
    np.testing.assert_allclose(result["pose"], trajectory[:, 1].numpy(), atol=2e-5)
    # tau below every first move: every correction is discarded, the uncorrected pose is output
    result = run(0.0, move1.min() / 2)
    assert result["discarded"].all() and not result["converged"].any() and (result["steps"] == 0).all()
    np.testing.assert_array_equal(result["pose"], result["initial"])
    # tau between the drifts after two steps: exactly the frames that drift further are discarded
    order = np.argsort(drift2)
    tau = (drift2[order[1]] + drift2[order[2]]) / 2
    assert (move1 < tau).all()  # nobody is discarded at step 1
    result = run(0.0, tau)
    far = drift2 > tau
    np.testing.assert_array_equal(result["discarded"], far)
    np.testing.assert_allclose(result["pose"][~far], trajectory[~far, 2].numpy(), atol=2e-5)
    np.testing.assert_array_equal(result["pose"][far], result["initial"][far])
    # "previous" reference: the step-to-step move is compared with tau instead
    tau_prev = (min(move1.min(), move2.min())) / 2
    result = run(0.0, tau_prev, reference="previous")
    assert result["discarded"].all()
    # a target the projection already meets: (rounding-level) zero gradient, no SGD move, converged at once
    with torch.no_grad():
        exact = projector.project(projector.correct(p3d.reshape(4, -1))).reshape(4, 17, 2)
    result = self_supervised_correction(projector, p3d, exact, weights, CorrectionSettings(lr=lr, optimizer="sgd"))
    assert result["converged"].all() and (result["steps"] == 1).all()
    np.testing.assert_allclose(result["pose"], result["initial"], atol=1e-6)


def test_correction_bad_settings_and_shapes():
    projector = small_projector()
    with pytest.raises(PosekitError, match="optimizer"):
        CorrectionSettings(optimizer="lbfgs")
    with pytest.raises(PosekitError, match="reference"):
        CorrectionSettings(reference="start")
    with pytest.raises(PosekitError, match="expected p3d"):
        self_supervised_correction(projector, torch.zeros(3, 16, 3), torch.zeros(3, 16, 2))
    result = self_supervised_correction(projector, torch.zeros(3, 17, 3), torch.zeros(3, 17, 2),
                                        settings=CorrectionSettings(steps=0))
    assert (result["steps"] == 0).all()
    np.testing.assert_array_equal(result["pose"], result["initial"])


def test_configs_validate_and_stages_train_the_right_parts(shared_mocap):
    from pathlib import Path

    from posekit.engine.config import load_config
    from posekit.engine.tasks import build_task

    configs = Path(__file__).resolve().parents[1] / "configs" / "lift"
    paper = build_task(load_config(configs / "pose_machine3d_h36m_protocol1.yaml")).config
    assert paper["lift"]["model"]["width"] == 1024 and paper["train"]["optimizer"]["lr"] == 1e-5
    assert paper["lift"]["joint_dropout"] == 0.3 and paper["lift"]["correction"]["tau_mm"] == 20.0
    small = ["lift.model={width: 16, layers: 2, temporal: lstm, projector_hidden: 8, projector_width: 8}",
             f"data.mocap={shared_mocap}", "data.clip_length=4"]
    expected = {"transformer": (True, False), "projector": (False, True), "projector_ssl": (False, True),
                "joint": (True, True), "all": (True, True)}
    for stage, (transformer_learns, projector_learns) in expected.items():
        task = build_task(load_config(configs / "lifter_cmu_h36m17.yaml", small + [f"lift.stage={stage}"]))
        if stage == "transformer":
            train = task.train_dataset()
            assert {m.meta["trial"] for m in task._split()[1]} == {"07_05", "09_06"}
            rng = np.random.default_rng(0)
            batch = task.collate([train.sample(i, rng) for i in range(3)])
        model = task.build_model()
        loss, parts = task.training_step(model, batch)
        loss.backward()
        grads = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters())
                 for name in ("transformer", "projector")}
        assert (grads["transformer"], grads["projector"]) == (transformer_learns, projector_learns), stage
        assert torch.isfinite(loss)
