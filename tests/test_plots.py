"""Figures (vaelib.plots) and the latent explorer (vaelib.widgets): each figure has a title and labelled
axes, shows something, and draws the data it was given where it should be."""

from __future__ import annotations

import base64
import io
import math

import matplotlib
import numpy as np
import pytest
import torch

from vaelib.models import SIGMA_RANGE

matplotlib.use("Agg")

from matplotlib.patches import Circle, Ellipse, Rectangle  # noqa: E402

from vaelib import plots  # noqa: E402
from vaelib.evaluation import decode, interpolation_codes, manifold_codes, project_2d  # noqa: E402
from vaelib.models import VAE  # noqa: E402
from vaelib.widgets import LatentExplorer  # noqa: E402


def _images(n, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _shown(fig) -> np.ndarray:
    """The array drawn by the figure's first image."""
    (image,) = fig.axes[0].get_images()
    return np.asarray(image.get_array())


def _tile(array, row, col, pad=1, side=28):
    top, left = pad + row * (side + pad), pad + col * (side + pad)
    return array[top:top + side, left:left + side]


def _labelled(ax, x=True, y=True):
    assert ax.get_title(), "no title"
    if x:
        assert ax.get_xlabel(), "no x label"
    if y:
        assert ax.get_ylabel(), "no y label"


def test_image_grid_draws_each_image_in_its_tile():
    images = _images(10)
    fig = plots.image_grid(images, nrow=4, title="ten images")
    shown = _shown(fig)
    assert fig.axes[0].get_title() == "ten images"
    for i in (0, 3, 4, 9):
        np.testing.assert_allclose(_tile(shown, *divmod(i, 4)), images[i, 0].numpy())
    assert shown.std() > 0.1  # not blank
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        plots.image_grid(images[0])


def test_reconstructions_put_originals_above_their_reconstructions():
    originals, recons = _images(6, 1), _images(6, 2)
    fig = plots.reconstructions(originals, recons, n=5)
    shown = _shown(fig)
    for i in range(5):
        np.testing.assert_allclose(_tile(shown, 0, i), originals[i, 0].numpy())
        np.testing.assert_allclose(_tile(shown, 1, i), recons[i, 0].numpy())
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["original", "decoded"]
    assert fig.axes[0].get_title()


def test_latent_scatter_draws_2d_codes_where_they_are_with_class_names_and_the_prior_circle():
    codes, labels = torch.randn(50, 2), torch.arange(50) % 10
    names = [f"class {i}" for i in range(10)]
    fig = plots.latent_scatter(codes, labels, names, title="codes", circle=3.0)
    ax = fig.axes[0]
    _labelled(ax)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), codes.numpy(), rtol=1e-6)
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == names  # the colour bar
    (circle,) = [p for p in ax.patches if isinstance(p, Circle)]
    assert circle.get_radius() == 3.0 and tuple(circle.center) == (0, 0)
    assert ax.get_legend() is not None


def test_latent_scatter_projects_wide_codes_on_their_principal_components():
    codes = torch.randn(80, 20, generator=torch.Generator().manual_seed(0))
    fig = plots.latent_scatter(codes, torch.zeros(80, dtype=torch.long))
    xy, (xlabel, _) = project_2d(codes)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), xy.numpy(), rtol=1e-5, atol=1e-6)
    assert fig.axes[0].get_xlabel() == xlabel == "principal component 1"


def test_gaussian_ellipses_are_centred_on_mu_and_four_sigmas_wide():
    mu = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.log(torch.tensor([[0.25, 1.0], [4.0, 0.01]]))
    fig = plots.gaussian_ellipses(mu, logvar, torch.tensor([0, 1]))
    ax = fig.axes[0]
    _labelled(ax)
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert [tuple(e.center) for e in ellipses] == [(0.0, 1.0), (2.0, -1.0)]
    assert [v for e in ellipses for v in (e.width, e.height)] == pytest.approx([2.0, 4.0, 8.0, 0.4])
    assert all(e.get_fill() for e in ellipses)
    with pytest.raises(ValueError, match="2-D latent"):
        plots.gaussian_ellipses(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2))


def test_gaussian_ellipses_outlines_and_zoom_window():
    mu = torch.tensor([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0]])
    logvar = torch.full((3, 2), 2 * math.log(0.002))              # sigma = 0.002: tiny clouds
    window = (-0.02, 0.03, -0.02, 0.02)
    fig = plots.gaussian_ellipses(mu, logvar, torch.tensor([0, 1, 2]), filled=False, window=window)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx(window[:2]) and ax.get_ylim() == pytest.approx(window[2:])
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert not any(e.get_fill() for e in ellipses)
    # In the window, a 2-sigma ellipse spans a visible share of the axis (not lost behind its dot).
    assert ellipses[0].width / (window[1] - window[0]) > 0.1
    # Ticks give the offset from the window's centre (0.005, 0), not long absolute coordinates.
    fig.canvas.draw()
    ticks = {round(v, 6): t.get_text() for v, t in zip(ax.get_xticks(), ax.get_xticklabels())}
    assert ticks[0.005] == "0" and ticks[0.015] == "+0.01", ticks
    assert "window's centre" in ax.get_xlabel()
    overview = plots.gaussian_ellipses(mu, logvar, torch.tensor([0, 1, 2]), mark=window).axes[0]
    (frame,) = [p for p in overview.patches if isinstance(p, Rectangle)]
    assert (frame.get_x(), frame.get_y()) == pytest.approx((window[0], window[2]))
    assert (frame.get_width(), frame.get_height()) == pytest.approx((0.05, 0.04))
    assert overview.get_xlim()[1] > 5  # the overview shows every centre


def test_manifold_draws_the_decoded_grid_with_quantile_ticks():
    torch.manual_seed(0)
    model = VAE(latent_dim=2)
    z, q = manifold_codes(2, n=4)
    images = decode(model, z)
    fig = plots.manifold(images, q, title="grid")
    ax = fig.axes[0]
    _labelled(ax)
    shown = _shown(fig)
    np.testing.assert_allclose(_tile(shown, 1, 2, pad=0), images[1 * 4 + 2, 0].numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:.1f}" for v in q[::2].tolist()]
    with pytest.raises(ValueError, match="16 images"):
        plots.manifold(images[:5], q)


def test_interpolation_labels_each_image_with_its_weight():
    images = _images(3)
    fig = plots.interpolation(images, torch.tensor([0.0, 0.5, 1.0]))
    ax = fig.axes[0]
    _labelled(ax, y=False)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1"]
    np.testing.assert_allclose(_tile(_shown(fig), 0, 2), images[2, 0].numpy())
    _, t = interpolation_codes(torch.zeros(2), torch.ones(2), steps=3)
    with pytest.raises(ValueError, match="one image per weight"):
        plots.interpolation(images[:2], t)


def test_a_long_walk_labels_a_few_weights_large_enough_to_read():
    _, t = interpolation_codes(torch.zeros(2), torch.ones(2), steps=10)
    ax = plots.interpolation(_images(10), t).axes[0]
    labels = ax.get_xticklabels()
    assert 3 <= len(labels) <= 5
    assert labels[0].get_text() == "0" and labels[-1].get_text() == "1"
    assert min(label.get_fontsize() for label in labels) >= 12
    ticks = ax.get_xticks()
    side = 29
    assert ticks[0] == side / 2 and ticks[-1] == 9 * side + side / 2  # on the first and the last image
    assert len(set(np.diff(ticks))) == 1  # evenly spaced


def test_training_curves_plot_every_run_and_key():
    a = {"loss": [3.0, 2.0, 1.0], "recon": [5.0, 4.0, 3.5], "kl": [0.5, 1.0, 1.5]}
    b = {"loss": [4.0, 3.0], "recon": [6.0, 5.0], "kl": [0.1, 0.2]}
    fig = plots.training_curves({"A": a, "B": b}, keys=("recon", "kl"), logy=("kl",))
    recon_ax, kl_ax = fig.axes
    for ax in (recon_ax, kl_ax):
        _labelled(ax)
    assert [list(line.get_ydata()) for line in recon_ax.get_lines()] == [a["recon"], b["recon"]]
    assert list(kl_ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert [t.get_text() for t in recon_ax.get_legend().get_texts()] == ["A", "B"]
    assert kl_ax.get_yscale() == "log" and recon_ax.get_yscale() == "linear"
    assert recon_ax.get_ylabel() == "reconstruction NLL (nats per image)"
    single = plots.training_curves(a, keys=("loss",), title="one run")
    assert list(single.axes[0].get_lines()[0].get_ydata()) == a["loss"]
    assert single.axes[0].get_legend() is None
    # One panel: the figure's title names it, and the panel repeats no title of its own.
    assert single.axes[0].get_title() == "" and single._suptitle.get_text() == "one run"
    assert single.axes[0].get_ylabel() == "loss (nats per image)"


def test_a_log_axis_is_labelled_with_plain_numbers():
    history = {"loss": [1.0] * 4, "mean_sigma": [0.8, 0.1, 0.02, 0.004]}
    fig = plots.training_curves(history, keys=("mean_sigma",), logy=("mean_sigma",))
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks()) if low <= v <= high]
    assert 3 <= len(shown) <= 9, shown
    assert all("$" not in label and "^" not in label for label in shown), shown  # no 10^-2 mathtext
    assert {"0.01", "0.1"} <= set(shown), shown
    minor = [t.get_text() for t in ax.yaxis.get_minorticklabels()]
    assert not any(minor), minor


def test_sigma_histogram_counts_every_value_of_each_model():
    sigmas = {"narrow": torch.full((30,), 1e-3), "wide": torch.linspace(0.5, 1.0, 20)}
    fig = plots.sigma_histogram(sigmas, colors={"wide": "tab:red"})
    ax = fig.axes[0]
    _labelled(ax)
    assert [sum(bar.get_height() for bar in series) for series in ax.containers] == [30, 20]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["narrow", "wide"]
    assert ax.get_xscale() == "log"
    # Each series is outlined in its own colour, on top of its light bars.
    outlines = [p for p in ax.patches if p.get_fill() is False]
    assert len(outlines) == 2
    assert matplotlib.colors.same_color(outlines[1].get_edgecolor(), "tab:red")
    assert matplotlib.colors.same_color(ax.containers[1][0].get_facecolor()[:3], "tab:red")


def test_sigma_histogram_marks_the_clamp_floor_where_asked():
    sigmas = {"narrow": torch.full((30,), 1e-3)}
    assert not plots.sigma_histogram(sigmas).axes[0].lines
    ax = plots.sigma_histogram(sigmas, floor=SIGMA_RANGE[0]).axes[0]
    [line] = ax.lines
    assert line.get_xdata()[0] == pytest.approx(SIGMA_RANGE[0]) and line.get_linestyle() == ":"
    assert any("clamp floor" in t.get_text() for t in ax.get_legend().get_texts())


# --- the latent explorer ----------------------------------------------------------------------------

def test_tile_images_lays_out_rows_of_tiles_with_padding_between():
    images = _images(5)
    grid = plots.tile_images(images, nrow=3, pad=2)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)  # two rows of three 28-pixel tiles, 2 pixels apart
    np.testing.assert_allclose(_tile(grid, 1, 1, pad=2), images[4, 0].numpy())
    assert (grid[:, :2] == 1).all() and (grid[-2:, :] == 1).all()
    assert (_tile(grid, 1, 2, pad=2) == 1).all()  # the sixth place has no image: padding colour
    np.testing.assert_allclose(plots.tile_images(images, nrow=5, pad=0), torch.cat(list(images[:, 0]), 1).numpy())


def test_png_bytes_with_a_palette_is_smaller_and_looks_the_same():
    from PIL import Image

    fig = plots.image_grid(_images(16), nrow=4)
    full, small = plots.png_bytes(fig), plots.png_bytes(fig, palette=True)
    pixels = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float) for png in (full, small)]
    assert pixels[0].shape == pixels[1].shape == (int(fig.get_figheight() * 100), int(fig.get_figwidth() * 100), 3)
    assert np.abs(pixels[0] - pixels[1]).mean() < 6  # of 255: no visible change
    assert len(small) < 0.8 * len(full)


@pytest.fixture(scope="module")
def explorer():
    torch.manual_seed(0)
    return LatentExplorer(VAE(latent_dim=5).eval(), n_sliders=3, steps=5)


def test_the_static_view_sweeps_one_dimension_per_row(explorer):
    fig = explorer.static_figure()
    ax = fig.axes[0]
    _labelled(ax)
    shown = _shown(fig)
    values = torch.linspace(-explorer.span, explorer.span, explorer.steps)
    for row, col in ((0, 0), (2, 4), (1, 2)):
        z = torch.zeros(1, 5)
        z[0, row] = values[col]
        np.testing.assert_allclose(_tile(shown, row, col), decode(explorer.model, z)[0, 0].numpy(),
                                   atol=1e-6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["$z_1$", "$z_2$", "$z_3$"]


def test_the_display_bundle_carries_a_png_fallback(explorer):
    bundle = explorer._repr_mimebundle_()
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    from PIL import Image

    assert min(Image.open(io.BytesIO(png)).size) > 100


def test_moving_a_slider_redraws_the_decoded_image(explorer):
    pytest.importorskip("ipywidgets")
    box = explorer.widget()
    sliders, image = box.children[0].children, box.children[1]
    assert len(sliders) == 3
    before = image.value
    sliders[1].value = 2.0
    assert image.value != before
    assert explorer.z[0, 1].item() == 2.0


def test_the_explorer_rejects_zero_sliders():
    with pytest.raises(ValueError, match="n_sliders"):
        LatentExplorer(VAE(latent_dim=2), n_sliders=0)
