"""The dense CRF (fcnseg.models.crf): one mean-field update worked out by hand, the windowed filter
against a naive O(N^2) dense sum, any image size, gradients, and a denoising case it must win."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fcnseg
from fcnseg.models import build_model, model_options
from fcnseg.models import crf as crf_module
from fcnseg.models.crf import (
    AppearanceFilter,
    CRFasRNN,
    CRFParameters,
    dense_crf,
    mean_field,
    smoothness_messages,
)

# Every kernel reaches across a 3 x 4 image: the windowed filter is then the exact dense one.
WHOLE = CRFParameters(
    iterations=1,
    appearance_weight=2.0,
    appearance_position_sigma=2.0,
    appearance_colour_sigma=10.0,
    smoothness_weight=1.0,
    smoothness_sigma=1.5,
    window=7,
    dilation=1,
)


def naive_messages(
    q: np.ndarray, image: np.ndarray, parameters: CRFParameters, reach: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) Q and (3, H, W) image -> the dense CRF's appearance and smoothness messages,
    sum over every pixel pair i != j (or only those at most `reach` apart along each axis)."""
    _, height, width = q.shape
    appearance, smoothness = np.zeros_like(q), np.zeros_like(q)
    pixels = [(y, x) for y in range(height) for x in range(width)]
    for yi, xi in pixels:
        for yj, xj in pixels:
            if (yi, xi) == (yj, xj) or max(abs(yi - yj), abs(xi - xj)) > (reach or 10**9):
                continue
            distance = (yi - yj) ** 2 + (xi - xj) ** 2
            colour = ((image[:, yi, xi] - image[:, yj, xj]) ** 2).sum()
            appearance[:, yi, xi] += (
                math.exp(
                    -distance / (2 * parameters.appearance_position_sigma**2)
                    - colour / (2 * parameters.appearance_colour_sigma**2)
                )
                * q[:, yj, xj]
            )
            smoothness[:, yi, xi] += (
                math.exp(-distance / (2 * parameters.smoothness_sigma**2)) * q[:, yj, xj]
            )
    return appearance, smoothness


def softmax(scores: np.ndarray) -> np.ndarray:
    exponentials = np.exp(scores - scores.max(axis=0))
    return exponentials / exponentials.sum(axis=0)


def random_case(height: int, width: int, classes: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, classes, height, width, generator=generator, dtype=torch.float64)
    image = torch.rand(1, 3, height, width, generator=generator, dtype=torch.float64) * 40
    return logits, image


# --- (a) one mean-field update, worked out by hand -------------------------------------------


def test_one_update_on_a_2x2_image_by_hand():
    # Pixel (y, x): logits of classes (0, 1), and RGB colour.
    #   (0, 0): (2, 0)  black          (0, 1): (1, 0)  (10, 0, 0)
    #   (1, 0): (0, 1)  (0, 20, 0)     (1, 1): (0, 3)  (100, 100, 100)
    logits = torch.tensor([[[[2.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 3.0]]]])
    image = torch.tensor(
        [[[[0.0, 10.0], [0.0, 100.0]], [[0.0, 0.0], [20.0, 100.0]], [[0.0, 0.0], [0.0, 100.0]]]]
    )
    parameters = CRFParameters(
        iterations=1,
        appearance_weight=2.0,
        appearance_position_sigma=2.0,  # 2 theta_alpha^2 = 8
        appearance_colour_sigma=10.0,  # 2 theta_beta^2 = 200
        smoothness_weight=1.0,
        smoothness_sigma=1.0,  # 2 theta_gamma^2 = 2
        window=3,
        dilation=1,
    )
    result = dense_crf(logits, image, parameters)[0].numpy()  # (2, 2, 2) log Q

    q = {  # Q before the update: softmax of each pixel's logits
        (0, 0): softmax(np.array([2.0, 0.0])),
        (0, 1): softmax(np.array([1.0, 0.0])),
        (1, 0): softmax(np.array([0.0, 1.0])),
        (1, 1): softmax(np.array([0.0, 3.0])),
    }
    # Pixel (0, 0). Its neighbours, with squared distance and squared colour difference:
    #   (0, 1): 1, 10^2 = 100      (1, 0): 1, 20^2 = 400      (1, 1): 2, 3 x 100^2 = 30000
    appearance = (
        math.exp(-1 / 8 - 100 / 200) * q[0, 1]
        + math.exp(-1 / 8 - 400 / 200) * q[1, 0]
        + math.exp(-2 / 8 - 30000 / 200) * q[1, 1]
    )
    smoothness = (
        math.exp(-1 / 2) * q[0, 1] + math.exp(-1 / 2) * q[1, 0] + math.exp(-2 / 2) * q[1, 1]
    )
    pairwise = 2.0 * appearance + 1.0 * smoothness  # (2,): one per class
    # Potts: each class pays what the neighbours send for the other class.
    scores = np.array([2.0, 0.0]) - pairwise[::-1]
    expected = scores - np.log(np.exp(scores).sum())
    np.testing.assert_allclose(result[:, 0, 0], expected, rtol=1e-5)

    # Pixel (1, 1): its colour is far from all the others' (exp(-26400 / 200) ~ 1e-57), so only
    # the smoothness kernel speaks: (0, 1) and (1, 0) at distance 1, (0, 0) at distance^2 2.
    smoothness = math.exp(-1 / 2) * (q[0, 1] + q[1, 0]) + math.exp(-2 / 2) * q[0, 0]
    scores = np.array([0.0, 3.0]) - 1.0 * smoothness[::-1]
    expected = scores - np.log(np.exp(scores).sum())
    np.testing.assert_allclose(result[:, 1, 1], expected, rtol=1e-5)


def test_one_normalised_update_divides_each_kernel_by_its_sum():
    # The 2x2 case above, pixel (0, 0), with CRF-as-RNN's normalised messages: each kernel's
    # messages become the kernel-weighted mean of the neighbours' Q.
    logits = torch.tensor([[[[2.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 3.0]]]])
    image = torch.tensor(
        [[[[0.0, 10.0], [0.0, 100.0]], [[0.0, 0.0], [20.0, 100.0]], [[0.0, 0.0], [0.0, 100.0]]]]
    )
    parameters = CRFParameters(
        iterations=1,
        appearance_position_sigma=2.0,
        appearance_colour_sigma=10.0,
        smoothness_sigma=1.0,
        window=3,
        dilation=1,
    )
    weights = torch.tensor([2.0, 1.0])
    result = mean_field(logits, image, parameters, weights, normalize=True)[0].numpy()
    q01, q10, q11 = (softmax(np.array(pair)) for pair in ([1.0, 0.0], [0.0, 1.0], [0.0, 3.0]))
    kernels_a = [
        math.exp(-1 / 8 - 100 / 200),
        math.exp(-1 / 8 - 400 / 200),
        math.exp(-2 / 8 - 30000 / 200),
    ]
    kernels_s = [math.exp(-1 / 2), math.exp(-1 / 2), math.exp(-2 / 2)]
    neighbours = (q01, q10, q11)  # (0, 1), (1, 0), (1, 1)
    appearance = sum(k * q for k, q in zip(kernels_a, neighbours, strict=True)) / sum(kernels_a)
    smoothness = sum(k * q for k, q in zip(kernels_s, neighbours, strict=True)) / sum(kernels_s)
    scores = np.array([2.0, 0.0]) - (2.0 * appearance + 1.0 * smoothness)[::-1]
    expected = scores - np.log(np.exp(scores).sum())
    np.testing.assert_allclose(result[:, 0, 0], expected, rtol=1e-5)


# --- (b) the windowed filter against the naive dense sum --------------------------------------


def test_a_window_over_the_whole_image_is_the_dense_crf():
    logits, image = random_case(3, 4, 2)
    q = logits.softmax(dim=1)
    appearance = AppearanceFilter(image, WHOLE)(q)[0].numpy()
    smoothness = smoothness_messages(q, WHOLE.smoothness_sigma)[0].numpy()
    expected_appearance, expected_smoothness = naive_messages(q[0].numpy(), image[0].numpy(), WHOLE)
    np.testing.assert_allclose(appearance, expected_appearance, rtol=1e-10)
    np.testing.assert_allclose(smoothness, expected_smoothness, rtol=1e-10)

    # And a whole update: unary minus the Potts penalty, then log_softmax.
    pairwise = 2.0 * expected_appearance + 1.0 * expected_smoothness
    scores = logits[0].numpy() - (pairwise.sum(axis=0) - pairwise)
    expected = scores - np.log(np.exp(scores).sum(axis=0))
    np.testing.assert_allclose(dense_crf(logits, image, WHOLE)[0].numpy(), expected, rtol=1e-10)


def test_a_truncated_window_is_the_dense_sum_cut_at_the_window_and_close_to_it():
    logits, image = random_case(9, 11, 3, seed=1)
    q = logits.softmax(dim=1)
    parameters = CRFParameters(
        appearance_position_sigma=1.0, appearance_colour_sigma=30.0, window=5, dilation=1
    )
    windowed = AppearanceFilter(image, parameters)(q)[0].numpy()
    cut, _ = naive_messages(q[0].numpy(), image[0].numpy(), parameters, reach=2)
    dense, _ = naive_messages(q[0].numpy(), image[0].numpy(), parameters)
    np.testing.assert_allclose(windowed, cut, rtol=1e-10)
    # What the window drops is at most the position kernel beyond 2 pixels (Q <= 1): here the
    # sum of exp(-d^2 / 2) over the 9 x 11 offsets outside the 5 x 5 window, about 0.1.
    steps = np.arange(-10, 11)
    far = np.maximum(np.abs(steps)[:, None], np.abs(steps)[None, :]) > 2
    bound = np.exp(-(steps[:, None] ** 2 + steps[None, :] ** 2) / 2)[far].sum()
    assert bound < 0.15
    assert np.abs(windowed - dense).max() <= bound
    assert np.abs(windowed - dense).max() > 0  # the cut is real: something was dropped


def test_a_dilated_window_samples_the_dense_sum_and_scales_it():
    logits, image = random_case(7, 9, 2, seed=2)
    q = logits.softmax(dim=1)[0].numpy()
    parameters = CRFParameters(appearance_position_sigma=3.0, window=3, dilation=2)
    windowed = AppearanceFilter(image, parameters)(torch.from_numpy(q)[None])[0].numpy()
    expected = np.zeros_like(q)
    for y in range(7):
        for x in range(9):
            for dy in (-2, 0, 2):
                for dx in (-2, 0, 2):
                    inside = 0 <= y + dy < 7 and 0 <= x + dx < 9
                    if (dy, dx) == (0, 0) or not inside:
                        continue
                    colour = ((image[0, :, y, x] - image[0, :, y + dy, x + dx]) ** 2).sum()
                    kernel = math.exp(-(dy * dy + dx * dx) / 18 - float(colour) / (2 * 13.0**2))
                    expected[:, y, x] += 4 * kernel * q[:, y + dy, x + dx]  # dilation^2 = 4
    np.testing.assert_allclose(windowed, expected, rtol=1e-10)


def test_smoothness_is_cut_at_three_sigma():
    logits, _ = random_case(12, 12, 2, seed=3)
    q = logits.softmax(dim=1)
    parameters = CRFParameters(smoothness_sigma=1.0)
    expected = naive_messages(q[0].numpy(), np.zeros((3, 12, 12)), parameters, reach=3)[1]
    np.testing.assert_allclose(smoothness_messages(q, 1.0)[0].numpy(), expected, rtol=1e-10)


def test_kernels_recomputed_over_the_budget_give_the_same(monkeypatch: pytest.MonkeyPatch):
    logits, image = random_case(10, 13, 3, seed=4)
    stored = dense_crf(logits, image)
    monkeypatch.setattr(crf_module, "KERNEL_BUDGET_BYTES", 0)
    assert AppearanceFilter(image, CRFParameters()).kernels is None
    torch.testing.assert_close(dense_crf(logits, image), stored, rtol=0, atol=0)


def test_zero_weights_leave_the_unary_and_potts_is_one_minus_identity():
    logits, image = random_case(6, 7, 3, seed=5)
    silent = CRFParameters(appearance_weight=0.0, smoothness_weight=0.0)
    torch.testing.assert_close(dense_crf(logits, image, silent), logits.log_softmax(dim=1))
    potts = 1 - torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(
        dense_crf(logits, image, compatibility=potts), dense_crf(logits, image)
    )


# --- (c) gradients of the trainable CRF --------------------------------------------------------


def test_crf_as_rnn_gradients_match_finite_differences():
    parameters = CRFParameters(iterations=2, appearance_colour_sigma=30.0, window=3, dilation=1)
    crf = CRFasRNN(3, parameters).double()
    logits, image = random_case(3, 4, 3, seed=6)
    logits.requires_grad_(True)
    log_weights = crf.log_weights.detach().clone().requires_grad_(True)
    compatibility = (crf.compatibility.detach() + 0.1 * torch.randn(3, 3).double()).requires_grad_()

    def run(logits, log_weights, compatibility):
        state = {"log_weights": log_weights, "compatibility": compatibility}
        return torch.func.functional_call(crf, state, (logits, image))

    assert torch.autograd.gradcheck(run, (logits, log_weights, compatibility))


def test_crf_as_rnn_starts_as_the_normalised_potts_crf_and_its_parameters_learn():
    logits, image = random_case(5, 6, 1, seed=7)  # a one-output model: two classes inside
    crf = CRFasRNN(1).double()
    assert crf.compatibility.shape == (2, 2)
    refined = crf(logits, image)
    settings = CRFParameters(appearance_weight=1.0, smoothness_weight=1.0)
    weights = torch.tensor([1.0, 1.0], dtype=torch.float64)
    fixed = mean_field(logits, image, settings, weights, normalize=True)
    torch.testing.assert_close(refined, fixed, rtol=1e-5, atol=1e-6)
    refined.square().sum().backward()
    assert crf.log_weights.grad.abs().min() > 0 and crf.compatibility.grad.abs().max() > 0


# --- (d) what it is for: a clean image, noisy scores ------------------------------------------


def test_the_crf_cleans_noisy_scores_along_the_image_edges():
    generator = torch.Generator().manual_seed(0)
    truth = torch.zeros(1, 32, 32, dtype=torch.long)
    truth[:, :, 13:] = 1  # two regions, with a vertical edge between columns 12 and 13
    image = 40.0 + 150.0 * truth[:, None].expand(-1, 3, -1, -1).double()
    image = image + 4 * torch.randn(image.shape, generator=generator, dtype=torch.float64)
    clean = torch.nn.functional.one_hot(truth, 2).permute(0, 3, 1, 2).double()
    logits = clean + 1.2 * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    before = (logits.argmax(dim=1) == truth).double().mean()
    after = (dense_crf(logits, image).argmax(dim=1) == truth).double().mean()
    assert 0.6 < before < 0.85  # noisy enough to matter
    assert after > 0.99 and after > before + 0.15


# --- (e) any image size ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (7, 13), (13, 8)])
@pytest.mark.parametrize("classes", [1, 3])
def test_any_image_size(size: tuple[int, int], classes: int):
    logits, image = random_case(*size, classes, seed=8)
    refined = dense_crf(logits, image, CRFParameters(window=5, dilation=2))
    assert refined.shape == logits.shape and torch.isfinite(refined).all()
    if classes > 1:
        torch.testing.assert_close(refined.exp().sum(dim=1), torch.ones(1, *size).double())
    if size == (1, 1):  # no neighbours: nothing but the unary
        expected = logits if classes == 1 else logits.log_softmax(dim=1)
        torch.testing.assert_close(refined, expected)


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ValueError, match=r"same N, H and W; got \(1, 2, 4, 5\) and \(1, 3, 4, 6\)"):
        dense_crf(torch.zeros(1, 2, 4, 5), torch.zeros(1, 3, 4, 6))
    with pytest.raises(ValueError, match=r"compatibility is \(2, 2\)"):
        dense_crf(torch.zeros(1, 2, 4, 5), torch.zeros(1, 3, 4, 5), compatibility=torch.eye(3))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window": 4}, "'window' (config key inference.crf.window"),
        ({"iterations": 0}, "'iterations'"),
        ({"appearance_colour_sigma": -1.0}, "accepted: a number > 0"),
        ({"smoothness_weight": math.nan}, "'smoothness_weight'"),
        ({"dilation": 1.5}, "'dilation'"),
    ],
)
def test_bad_parameters_are_refused(settings: dict, message: str):
    with pytest.raises(fcnseg.FcnsegError) as error:
        CRFParameters(**settings)
    assert message in str(error.value)


# --- (h) the `crf` option of every semantic model ----------------------------------------------


def test_a_model_with_the_crf_option_gives_logits_at_input_size_and_trains():
    torch.manual_seed(0)
    settings = {"iterations": 2, "window": 5, "dilation": 1}
    model = build_model("unet", 3, base_width=4, crf=settings)
    images = torch.randn(2, 3, 29, 37)
    masks = (images[:, 0] > 0).long() + (images[:, 1] > 0.5).long()  # a learnable target
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits = model(images)
        assert logits.shape == (2, 3, 29, 37)
        loss = torch.nn.functional.cross_entropy(logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert model.crf.compatibility.grad is not None and model.crf.log_weights.grad is not None
    assert model.size_divisor == model.model.size_divisor
    assert {"crf.log_weights", "crf.compatibility"} <= set(model.state_dict())


def test_the_crf_option_is_listed_checked_and_refused_for_instance_models():
    assert model_options("unet")["crf"] is None
    assert "crf" not in model_options("fcis")
    with pytest.raises(fcnseg.FcnsegError, match="'fcis' is an instance model"):
        build_model("fcis", 2, crf=True)
    with pytest.raises(fcnseg.FcnsegError, match=r"no option 'windw'.*Did you mean 'window'"):
        build_model("unet", 2, base_width=4, crf={"windw": 5})
    with pytest.raises(fcnseg.FcnsegError, match="1 input channel"):
        build_model("unet", 2, 1, base_width=4, crf=True)
    grey = build_model("unet", 1, 1, base_width=4, crf={"mean": [0.5], "std": [0.25]})
    assert grey(torch.randn(1, 1, 17, 19)).shape == (1, 1, 17, 19)
    assert type(build_model("unet", 2, base_width=4, crf=False)).__name__ == "UNet"
