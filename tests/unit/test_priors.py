"""Prior shift, EM prior estimation, Platt scaling, the Bayes threshold and implied precision.

The data are two Gaussian classes, ``x | y ~ N(±MU, 1)``, whose exact posterior at
any class prior is known: ``logit P(y=1 | x) = 2 * MU * x + logit(prior)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.evaluation.calibration import fit_platt
from mlcycle.evaluation.priors import (
    Rates,
    adjust_binary,
    adjust_posteriors,
    bayes_threshold,
    class_rates,
    estimate_positive_rate,
    estimate_prior,
    implied_precision_recall,
    logit,
    precision_lower_bound,
    prior_shift,
    sigmoid,
    wilson_bounds,
)

pytestmark = pytest.mark.unit

MU = 1.0


def sample(n: int, prior: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws (x, y) of the two-Gaussian world with positive rate ``prior``."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prior).astype(np.int64)
    x = rng.normal(np.where(y == 1, MU, -MU), 1.0)
    return x, y


def posterior(x: np.ndarray, prior: float) -> np.ndarray:
    """The exact P(y=1 | x) when the positive rate is ``prior``."""
    return np.asarray(sigmoid(2 * MU * x + logit(prior)))


def test_adjusting_to_a_new_prior_gives_the_exact_posterior_under_it() -> None:
    x, _ = sample(1000, 0.5, seed=0)
    made_at_half = posterior(x, 0.5)
    assert np.allclose(adjust_binary(made_at_half, 0.5, 0.1), posterior(x, 0.1), atol=1e-9)
    assert np.allclose(adjust_binary(made_at_half, 0.5, 0.5), made_at_half, atol=1e-12)
    # The K-class form agrees with the binary one, and with the logit shift.
    two = np.stack([1 - made_at_half, made_at_half], axis=1)
    adjusted = adjust_posteriors(two, np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert np.allclose(adjusted[:, 1], posterior(x, 0.1), atol=1e-9)
    assert prior_shift(0.5, 0.1) == pytest.approx(np.log(0.1 / 0.9))


@pytest.mark.parametrize("true_prior", [0.05, 0.1, 0.3, 0.8])
def test_em_finds_the_prior_of_unlabeled_data(true_prior: float) -> None:
    x, y = sample(20_000, true_prior, seed=1)
    # Posteriors of a model calibrated where the classes were balanced (its training prior).
    scores = posterior(x, 0.5)
    found = estimate_positive_rate(scores, 0.5)
    assert found.converged
    assert abs(found.positive_rate - true_prior) < 0.015, found
    # Counting the scores' mean would not do: the model's prior pulls it towards 0.5.
    assert abs(scores.mean() - true_prior) > 3 * abs(found.positive_rate - true_prior)
    # Starting from another calibrated model's prior lands at the same place.
    again = estimate_positive_rate(posterior(x, 0.83), 0.83)
    assert again.positive_rate == pytest.approx(found.positive_rate, abs=1e-3)


def test_em_finds_three_class_priors() -> None:
    rng = np.random.default_rng(2)
    means = np.array([-2.0, 0.0, 2.0])
    truth = np.array([0.7, 0.2, 0.1])
    y = rng.choice(3, size=30_000, p=truth)
    x = rng.normal(means[y], 1.0)
    # Exact posteriors under uniform priors: softmax of the Gaussian log-likelihoods.
    loglik = -0.5 * (x[:, None] - means[None, :]) ** 2
    uniform = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    uniform /= uniform.sum(axis=1, keepdims=True)
    found = estimate_prior(uniform, np.ones(3) / 3)
    assert found.converged
    assert np.allclose(found.priors, truth, atol=0.02), found.priors


def test_em_and_adjustment_refuse_what_they_cannot_use() -> None:
    with pytest.raises(InvalidInput, match="no posteriors"):
        estimate_positive_rate(np.array([]), 0.5)
    with pytest.raises(InvalidInput, match="model_prior"):
        estimate_positive_rate(np.array([0.3]), 1.0)
    with pytest.raises(InvalidInput, match="within"):
        estimate_positive_rate(np.array([0.3, 1.5]), 0.5)
    with pytest.raises(InvalidInput, match="priors"):
        adjust_posteriors(np.array([[0.5, 0.5]]), np.array([0.5, 0.0]), np.array([0.5, 0.5]))


def test_platt_scaling_recovers_the_map_to_calibrated_logits() -> None:
    x, y = sample(20_000, 0.3, seed=3)
    true_logit = 2 * MU * x + logit(0.3)
    # An over-confident, biased model: its logit is 3 * the true one - 1.
    platt = fit_platt(3 * true_logit - 1, y)
    assert platt.scale == pytest.approx(1 / 3, abs=0.02)
    assert platt.shift == pytest.approx(1 / 3, abs=0.05)
    calibrated = sigmoid(platt.logits(3 * true_logit - 1))
    # The intercept makes the mean calibrated probability the sample's own positive rate.
    assert np.mean(calibrated) == pytest.approx(y.mean(), abs=2e-3)
    with pytest.raises(InvalidInput, match="both classes"):
        fit_platt(np.array([0.1, 0.2]), np.array([1, 1]))


def test_separable_scores_still_get_a_finite_calibration() -> None:
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    platt = fit_platt(logits, np.array([0, 0, 0, 1, 1, 1]))
    assert np.isfinite(platt.scale) and 0 < platt.scale < 50


def test_the_bayes_threshold_minimizes_the_expected_cost() -> None:
    assert bayes_threshold(1.0) == 0.5
    assert bayes_threshold(9.0) == pytest.approx(0.9)
    assert bayes_threshold(0.25) == pytest.approx(0.2)
    with pytest.raises(InvalidInput, match="cost_ratio"):
        bayes_threshold(0.0)
    cost_ratio, prior = 3.0, 0.1
    x, y = sample(200_000, prior, seed=4)
    p = posterior(x, prior)

    def cost(threshold: float) -> float:
        flagged = p >= threshold
        return float(cost_ratio * np.sum(flagged & (y == 0)) + np.sum(~flagged & (y == 1)))

    chosen = cost(bayes_threshold(cost_ratio))
    for other in (0.3, 0.5, 0.6, 0.9):
        assert chosen < cost(other), other


def test_implied_precision_at_another_prior_matches_sampling_at_it() -> None:
    # Rates measured where positives are common (like a training corpus) ...
    x_dev, y_dev = sample(50_000, 0.8, seed=5)
    rates = class_rates(x_dev, y_dev, threshold=0.5)
    implied = implied_precision_recall(rates, prior=0.1)
    # ... say what a stream where they are rare will see.
    x_live, y_live = sample(200_000, 0.1, seed=6)
    flagged = x_live >= 0.5
    assert implied["precision"] == pytest.approx(y_live[flagged].mean(), abs=0.01)
    assert implied["recall"] == pytest.approx(flagged[y_live == 1].mean(), abs=0.01)
    assert implied["flagged_rate"] == pytest.approx(flagged.mean(), abs=0.005)
    # The formula itself.
    fixed = class_rates(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 1, 0, 0]), 0.5)
    assert (fixed.tpr, fixed.fpr) == (0.5, 0.5)
    by_hand = implied_precision_recall(fixed, 0.2)
    assert by_hand["precision"] == pytest.approx(0.2 * 0.5 / (0.2 * 0.5 + 0.8 * 0.5))
    nothing = class_rates(np.array([0.1, 0.2]), np.array([1, 0]), 0.5)
    assert implied_precision_recall(nothing, 0.1)["precision"] is None


def test_the_precision_lower_bound_reflects_how_few_negatives_were_seen() -> None:
    few = class_rates(np.r_[np.ones(50), np.zeros(60)], np.r_[np.ones(60), np.zeros(50)], 0.5)
    assert (few.tpr, few.fpr) == (50 / 60, 0.0)
    assert implied_precision_recall(few, 0.1)["precision"] == 1.0
    low = precision_lower_bound(few, 0.1)
    assert low is not None and low < 0.9  # 50 clean negatives do not prove an FPR of 0
    many = Rates(tpr=50 / 60, fpr=0.0, positives=6000, negatives=5000)
    assert low < precision_lower_bound(many, 0.1) < 1.0
    lower, upper = wilson_bounds(0.5, 100)
    assert lower < 0.5 < upper and upper - lower == pytest.approx(2 * 1.645 * 0.05, abs=0.01)
    with pytest.raises(InvalidInput, match="trial"):
        wilson_bounds(0.5, 0)
