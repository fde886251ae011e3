"""Losses against hand computations and reference implementations (PyTorch's own cross-entropy, brute-force pair loops,
numpy), their gradients, and make_loss's choices and refusals."""
import itertools, math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from yooptx.config import TrainConfig
from yooptx.core import UserError
from yooptx.models.losses import balanced_class_weights, cross_entropy, expected_direction, focal_loss, huber_loss, make_loss, mse_loss, quantile_loss, rank_loss, sharpe_loss

G = lambda s: torch.Generator().manual_seed(s)


@pytest.mark.parametrize('K', [2, 3])
@pytest.mark.parametrize('smooth', [0.0, 0.1])
@pytest.mark.parametrize('weighted', [False, True])
def test_cross_entropy_matches_torch(K, smooth, weighted):
    logits, y = torch.randn(50, K, generator=G(K)), torch.randint(0, K, (50,), generator=G(1))
    w = torch.rand(K, generator=G(2)) + 0.2 if weighted else None
    torch.testing.assert_close(cross_entropy(logits, y, w, smooth), F.cross_entropy(logits, y, weight=w, label_smoothing=smooth))
    soft = torch.softmax(torch.randn(50, K, generator=G(3)), -1)           # mixup-style soft targets
    torch.testing.assert_close(cross_entropy(logits, soft, w, smooth), F.cross_entropy(logits, soft, weight=w, label_smoothing=smooth))


def test_focal_by_hand_and_gamma_zero():
    logits, y = torch.randn(40, 3, generator=G(0)), torch.randint(0, 3, (40,), generator=G(1))
    w = torch.tensor([0.5, 1.0, 2.0])
    p = logits.softmax(-1).numpy()
    for gamma in (0.5, 2.0):
        pt = p[np.arange(40), y.numpy()]
        hand = (w.numpy()[y.numpy()] * (1 - pt) ** gamma * -np.log(pt)).sum() / w.numpy()[y.numpy()].sum()
        assert focal_loss(logits, y, gamma, w).item() == pytest.approx(hand, rel=1e-5)
    torch.testing.assert_close(focal_loss(logits, y, 0.0, w, 0.1), cross_entropy(logits, y, w, 0.1))
    # focusing: an easy, correct row loses more of its loss than a hard one
    easy, hard = torch.tensor([[0.0, 4.0]]), torch.tensor([[0.0, 0.2]])
    t = torch.tensor([1])
    assert focal_loss(easy, t, 2.0) / cross_entropy(easy, t) < focal_loss(hard, t, 2.0) / cross_entropy(hard, t)


def test_balanced_weights_equalize_class_mass():
    counts = [70, 20, 10]
    w = balanced_class_weights(counts).numpy()
    np.testing.assert_allclose(w * np.array(counts), [100 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(balanced_class_weights([5, 0, 5]).numpy(), [10 / 15, 0.0, 10 / 15], rtol=1e-6)   # an absent class weighs 0


@pytest.mark.parametrize('delta', [0.1, 1.0, 3.0])
def test_huber_and_mse_by_hand(delta):
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=200) * 2, rng.normal(size=200)
    e = np.abs(t - p)
    hand = np.where(e <= delta, 0.5 * e ** 2, delta * (e - 0.5 * delta)).mean()
    assert huber_loss(torch.tensor(p)[:, None], torch.tensor(t), delta).item() == pytest.approx(hand, rel=1e-5)
    assert mse_loss(torch.tensor(p), torch.tensor(t)).item() == pytest.approx(((t - p) ** 2).mean(), rel=1e-5)
    with pytest.raises(UserError, match='delta must be > 0'): huber_loss(torch.zeros(2), torch.zeros(2), 0.0)


def test_quantile_by_hand_and_calibration():
    rng = np.random.default_rng(1)
    qs = [0.1, 0.5, 0.9]
    p, t = rng.normal(size=(30, 3)), rng.normal(size=30)
    e = t[:, None] - p
    hand = np.maximum(np.array(qs) * e, (np.array(qs) - 1) * e).mean()
    assert quantile_loss(torch.tensor(p), torch.tensor(t), qs).item() == pytest.approx(hand, rel=1e-5)
    # the minimizing constants are the sample quantiles (pinball loss is piecewise linear: check on a grid)
    z = rng.standard_exponential(400)
    grid = np.linspace(0, 4, 801)
    for q in qs:
        losses = [quantile_loss(torch.full((400, 1), c), torch.tensor(z), [q]).item() for c in grid]
        assert abs(grid[int(np.argmin(losses))] - np.quantile(z, q)) < 0.03
    with pytest.raises(UserError, match=r'\(batch, 3\)'): quantile_loss(torch.zeros(4, 2), torch.zeros(4), qs)


def _rank_brute(s, y, g):
    num = den = 0.0
    for i, j in itertools.permutations(range(len(s)), 2):
        if g[i] == g[j] and y[i] > y[j]:
            w = y[i] - y[j]; num += w * math.log1p(math.exp(-(s[i] - s[j]))); den += w
    return num / den if den else 0.0


def test_rank_loss_matches_pair_loop_and_ranks():
    rng = np.random.default_rng(2)
    s, y, g = rng.normal(size=24), rng.normal(size=24), rng.integers(0, 4, 24)
    assert rank_loss(torch.tensor(s), torch.tensor(y), torch.tensor(g)).item() == pytest.approx(_rank_brute(s, y, g), rel=1e-5)
    # pairs never cross timestamps: shuffling one group's scores leaves other groups' terms alone
    assert rank_loss(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2])).item() == 0.0
    # gradient descent on scores recovers the within-group order of y
    sc = torch.zeros(24, requires_grad=True)
    opt = torch.optim.SGD([sc], lr=5.0)
    for _ in range(200): opt.zero_grad(); rank_loss(sc, torch.tensor(y), torch.tensor(g)).backward(); opt.step()
    for k in range(4):
        m = g == k
        assert np.corrcoef(np.argsort(np.argsort(sc.detach().numpy()[m])), np.argsort(np.argsort(y[m])))[0, 1] > 0.95


def test_sharpe_loss_by_hand_and_gradient():
    rng = np.random.default_rng(3)
    pos, r = rng.normal(size=64), rng.normal(size=64) * 0.01
    pnl = pos * r
    assert sharpe_loss(torch.tensor(pos), torch.tensor(r)).item() == pytest.approx(-pnl.mean() / pnl.std(), rel=1e-4)
    x = torch.tensor(rng.normal(size=16), dtype=torch.float64, requires_grad=True)
    rr = torch.tensor(rng.normal(size=16) * 0.01, dtype=torch.float64)
    f = lambda v: -(torch.tanh(v) * rr).mean() / ((torch.tanh(v) * rr).std(correction=0) + 1e-8)
    torch.autograd.gradcheck(f, (x,))
    # maximizing the surrogate puts positions on the side of the returns
    w = torch.zeros(64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(100): opt.zero_grad(); sharpe_loss(torch.tanh(w), torch.tensor(r)).backward(); opt.step()
    assert (np.sign(w.detach().numpy()) == np.sign(r)).mean() > 0.95


def test_expected_direction_two_and_three_classes():
    lg = torch.log(torch.tensor([[0.2, 0.8], [0.5, 0.5]]))
    torch.testing.assert_close(expected_direction(lg), torch.tensor([0.6, 0.0]))
    lg3 = torch.log(torch.tensor([[0.1, 0.3, 0.6]]))
    torch.testing.assert_close(expected_direction(lg3), torch.tensor([0.5]))


def test_make_loss_choices_and_errors():
    logits, y = torch.randn(8, 2, generator=G(0)), torch.randint(0, 2, (8,), generator=G(1))
    assert make_loss(TrainConfig(), 'classification', [0, 1]).name == 'cross_entropy'
    assert make_loss(TrainConfig(), 'regression').name == 'huber'
    ls = make_loss(TrainConfig(label_smoothing=0.1, class_weights='balanced'), 'classification', [0, 1], [6, 2])
    torch.testing.assert_close(ls(logits, y), F.cross_entropy(logits, y, weight=torch.tensor([8 / 12, 2.0]), label_smoothing=0.1))
    fo = make_loss(TrainConfig(loss='focal', focal_gamma=0.0), 'classification', [0, 1, 2])
    l3 = torch.randn(8, 3, generator=G(2)); y3 = torch.randint(0, 3, (8,), generator=G(3))
    torch.testing.assert_close(fo(l3, y3), F.cross_entropy(l3, y3))
    hu = make_loss(TrainConfig(huber_delta=0.5), 'regression')
    torch.testing.assert_close(hu(torch.randn(8, 1, generator=G(4)), torch.randn(8, generator=G(5))),
                               F.huber_loss(torch.randn(8, generator=G(4)), torch.randn(8, generator=G(5)), delta=0.5))
    rk = make_loss(TrainConfig(loss='rank'), 'regression')
    assert rk.needs == ('fwd_return', 'groups') and rk.head == 'regression'
    with pytest.raises(UserError, match='needs group ids'): rk(torch.zeros(3, 1), None, fwd_return=torch.zeros(3))
    with pytest.raises(UserError, match="class_weights='balanced' needs"):
        make_loss(TrainConfig(class_weights='balanced'), 'classification', [0, 1])
    with pytest.raises(UserError, match="train.loss='mse' does not fit classification labels"):
        make_loss(TrainConfig(loss='mse'), 'classification', [0, 1])
    with pytest.raises(UserError, match="train.loss='cross_entropy' does not fit regression labels"):
        make_loss(TrainConfig(loss='cross_entropy'), 'regression')
