"""Live figures (vaelib.live): the decoder exported for the page, the figure's HTML contract, and the
errors a caller gets for bad input. The JavaScript itself runs in tests/browser/test_live_browser.py."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from helpers import train  # noqa: E402
from vaelib import live  # noqa: E402
from vaelib.evaluation import encode_mean  # noqa: E402
from vaelib.models import ModelConfig, build_model  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
STATIC = Path(__file__).resolve().parents[1] / "_static"


@pytest.fixture(scope="module")
def ae2(mnist_small):
    """A 784-400-2 autoencoder (the book's "ae-2d" shape), trained briefly so its decoder draws digits."""
    model, _ = train(ModelConfig(kind="ae", latent_dim=2), mnist_small, epochs=3)
    return model.eval()


@pytest.fixture(scope="module")
def vae20(mnist_small):
    model, _ = train(ModelConfig(kind="vae", latent_dim=20), mnist_small, epochs=2)
    return model.eval()


@pytest.fixture(scope="module")
def fig2(ae2, mnist_small):
    codes = encode_mean(ae2, mnist_small)
    labels = torch.arange(len(codes)) % 10
    return live.figure(ae2, codes, labels, prior=True, circle=3.0, description="A test figure.")


@pytest.fixture(scope="module")
def fig20(vae20, mnist, mnist_small):
    idx = [int((mnist.test.labels == c).nonzero()[0]) for c in range(10)]
    return live.figure(vae20, encode_mean(vae20, mnist_small), torch.arange(len(mnist_small)) % 10,
                       mnist.class_names, prior=True, walk_images=mnist.test.images[idx],
                       walk_labels=mnist.test.labels[idx], walk_pair=(3, 8))


def _torch_probs(model, z):
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.as_tensor(z, dtype=torch.float32))).flatten(1).double().numpy()


# --- the export ------------------------------------------------------------------------------------


def test_quantize_rows_rounds_to_int8_and_beats_plain_rounding_on_its_inputs():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(50, 64, generator=gen)
    # inputs like a hidden layer's over a 2-D latent plane: 64 units driven by 2 numbers
    x = (torch.randn(500, 2, generator=gen) @ torch.randn(2, 64, generator=gen) + 1).relu()
    q, scale = live.quantize_rows(w, x)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and q.shape == (50, 64) and scale.shape == (50,)
    assert np.abs(q.astype(int)).max() <= 127
    np.testing.assert_allclose(scale, w.abs().amax(1).numpy() / 127, rtol=1e-6)
    dequantised = q.astype(np.float32) * scale[:, None]
    # each weight moves by a few rounding steps at most, and the matrix as a whole by under 2%
    assert (np.abs(dequantised - w.numpy()) / scale[:, None]).max() < 6
    assert np.linalg.norm(dequantised - w.numpy()) < 0.02 * np.linalg.norm(w.numpy())
    plain = np.clip(np.round(w.numpy() / scale[:, None]), -127, 127) * scale[:, None]
    err = lambda m: np.mean((x.numpy() @ (m - w.numpy()).T) ** 2)
    assert err(dequantised) < 0.5 * err(plain), (err(dequantised), err(plain))


def test_quantize_rows_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"weight \[out, in\] and inputs \[n, in\]"):
        live.quantize_rows(torch.randn(4, 8), torch.randn(10, 7))


def test_export_round_trip_keeps_small_layers_exact_and_the_output_within_tolerance(ae2, fig2):
    layers = fig2.payload["decoder"]["layers"]
    assert [(l["rows"], l["cols"], l["dtype"]) for l in layers] == [(400, 2, "float32"), (784, 400, "int8")]
    first, last = ae2.decoder[0][0], ae2.decoder[0][2]
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(layers[0]["weight"]), "<f4").reshape(400, 2),
                                  first.weight.detach().numpy())
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(layers[1]["bias"]), "<f4"),
                                  last.bias.detach().numpy())
    q = np.frombuffer(base64.b64decode(layers[1]["weight"]), "i1").reshape(784, 400)
    scale = np.frombuffer(base64.b64decode(layers[1]["scale"]), "<f4")
    w = last.weight.detach().numpy()
    assert np.linalg.norm(q * scale[:, None] - w) < 0.02 * np.linalg.norm(w)
    # codes the figure never checked: anywhere on its pad
    centre, half = np.array(fig2.payload["centre"]), fig2.payload["half"]
    z = centre + half * (2 * np.random.default_rng(1).random((3000, 2)) - 1)
    err = np.abs(live.decode_exported(fig2.payload["decoder"], z) - _torch_probs(ae2, z)).max()
    assert err < live.MAX_PIXEL_ERROR, err
    assert fig2.max_error < live.MAX_PIXEL_ERROR and fig2.n_checked > 1000


def test_the_reference_outputs_in_the_page_are_pytorchs(ae2, fig2, vae20, fig20):
    for model, fig in [(ae2, fig2), (vae20, fig20)]:
        check = fig.payload["check"]
        probs = np.frombuffer(base64.b64decode(check["probs"]), "<f4").reshape(len(check["codes"]), 784)
        np.testing.assert_allclose(probs, _torch_probs(model, check["codes"]), atol=1e-6)
        assert np.abs(live.decode_exported(fig.payload["decoder"], check["codes"]) - probs).max() < 0.02


def test_a_book_size_20d_decoder_fits_the_page_budget(fig20, vae20):
    n_weights = sum(p.numel() for p in vae20.decoder.parameters())
    float32_chars = 4 * n_weights * 4 / 3
    assert fig20.weight_chars <= live.MAX_WEIGHT_CHARS
    assert fig20.weight_chars < 0.35 * float32_chars, (fig20.weight_chars, float32_chars)
    assert len(fig20.html) < 800_000


def test_a_decoder_too_big_for_the_page_is_refused(mnist_small):
    big = build_model(kind="vae", latent_dim=2, hidden=(1000,))
    codes = torch.randn(50, 2)
    with pytest.raises(ValueError, match="characters in the page"):
        live.figure(big, codes, torch.zeros(50, dtype=torch.long))


# --- the HTML contract -----------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a.get("class", "").split(), a))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)

    def find(self, tag, cls):
        return [a for t, c, a in self.tags if t == tag and cls in c]


def test_the_html_has_the_parts_the_page_script_and_the_tests_rely_on(fig2, fig20):
    for fig in (fig2, fig20):
        doc = _Tags()
        doc.feed(fig.html)
        assert doc.tags[0][0] == "div" and "vae-live" in doc.tags[0][1]
        (pad,) = doc.find("canvas", "vae-live-pad")
        assert pad["tabindex"] == "0" and len(pad["aria-label"]) > 40
        assert len(doc.find("canvas", "vae-live-out")) == 1
        assert "hidden" in doc.find("div", "vae-live-body")[0]  # shown by the script, so Jupyter shows the image
        (img,) = [a for t, c, a in doc.tags if t == "img"]
        assert img["src"].startswith("data:image/png;base64,") and len(img["alt"]) > 40
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == PNG
        assert doc.find("script", "vae-live-data")[0]["type"] == "application/json"
        payload = json.loads(doc.scripts[0])
        assert payload["latent_dim"] == fig.payload["latent_dim"]
        assert doc.find("p", "vae-live-desc")
        assert len(doc.find("button", "vae-live-prior")) == 1
        # nothing the page would fetch: every src is inline data
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:)[a-z]+:""", fig.html)
        bundle = fig._repr_mimebundle_()
        assert bundle["text/html"] == fig.html
        assert base64.b64decode(bundle["image/png"])[:8] == PNG
    doc = _Tags()
    doc.feed(fig20.html)
    assert len(doc.find("button", "vae-live-flatten")) == 1 and len(doc.find("select", "vae-live-axis")) == 2
    assert doc.find("select", "vae-live-walk-a") and doc.find("input", "vae-live-t")
    assert fig20.payload["walk"]["pair"] == [3, 8] and fig20.payload["n_directions"] == 6
    assert fig2.payload["circle"] == 3.0 and "dashed circle" in fig2.html


def _selected(source: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The figure's classes (``.vae-live-pad``) and the data attributes of its parts, with their value
    where the selector fixes one (``.vae-live-thumb[data-end="a"]``), that a script or a stylesheet selects."""
    return (set(re.findall(r"\.(vae-live[\w-]*)", source)),
            set(re.findall(r"""\.vae-live[\w-]*\[(data-[\w-]+)(?:=["']([\w-]*)["']\])?""", source)))


def test_the_page_script_and_stylesheet_select_only_what_the_html_has(fig2, fig20):
    classes, attributes = set(), set()
    for fig in (fig2, fig20):  # between them, every optional part: circle, axis menus, walk, buttons
        doc = _Tags()
        doc.feed(fig.html)
        classes |= {c for _, cs, _ in doc.tags for c in cs}
        data = {(name, value) for _, _, a in doc.tags for name, value in a.items() if name.startswith("data-")}
        attributes |= data | {(name, "") for name, _ in data}  # "": a selector that names no value
    js = (STATIC / "vae-live.js").read_text(encoding="utf-8")
    added_by_script = set(re.findall(r"""classList\.add\(["'](vae-live[\w-]*)["']\)""", js))
    # The book's build moves each figure's weights out of the page and leaves a tag with the data attributes
    # that tools/lean_pages.py writes (data-key, ...): the script may select those too.
    lean_pages = (STATIC.parent / "tools" / "lean_pages.py").read_text(encoding="utf-8")
    attributes |= {(name, "") for name in re.findall(r"\b(data-[\w-]+)=", lean_pages)}
    for name in ("vae-live.js", "vae-live.css"):
        wanted, wanted_attributes = _selected((STATIC / name).read_text(encoding="utf-8"))
        assert len(wanted) >= 5, f"{name}: found too few selectors to check; has the pattern drifted?"
        assert wanted - classes - added_by_script == set(), f"{name} selects classes the figure's HTML lacks"
        assert wanted_attributes - attributes == set(), f"{name} selects attributes the figure's HTML lacks"


def test_text_from_the_caller_is_escaped(ae2):
    codes = torch.randn(20, 2)
    fig = live.figure(ae2, codes, torch.zeros(20, dtype=torch.long), ["</script><b>x"],
                      description="<script>alert(1)</script>")
    assert "<script>alert" not in fig.html and "</script><b>" not in fig.html
    doc = _Tags()
    doc.feed(fig.html)
    assert json.loads(doc.scripts[0])["class_names"] == ["</script><b>x"]


def test_the_20d_plane_is_spanned_by_orthonormal_principal_directions(fig20, vae20, mnist_small):
    basis = np.frombuffer(base64.b64decode(fig20.payload["basis"]), "<f4").reshape(6, 20)
    np.testing.assert_allclose(basis @ basis.T, np.eye(6), atol=1e-5)
    codes = encode_mean(vae20, mnist_small).numpy()
    spread = ((codes - codes.mean(0)) @ basis.T).var(0)
    assert all(a >= b - 1e-6 for a, b in zip(spread, spread[1:])), spread  # most spread first
    lo, hi = fig20.payload["norm_range"]
    norms = np.linalg.norm(np.random.default_rng(0).standard_normal((20000, 20)), axis=1)
    assert abs((norms < lo).mean() - 0.025) < 0.005 and abs((norms > hi).mean() - 0.025) < 0.005


def test_a_fallback_can_be_a_figure_or_png_bytes(ae2):
    codes = torch.randn(20, 2)
    labels = torch.zeros(20, dtype=torch.long)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    made = live.figure(ae2, codes, labels, fallback=fig, alt="A line from one corner to the other.")
    assert made.png[:8] == PNG and not plt.fignum_exists(fig.number)
    assert live.figure(ae2, codes, labels, fallback=made.png).png == made.png


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, error, match", [
    (dict(codes=torch.randn(10, 3)), ValueError, r"codes must be a tensor \[n, 2\]"),
    (dict(codes=torch.full((10, 2), float("nan"))), ValueError, "NaN"),
    (dict(labels=torch.zeros(9, dtype=torch.long)), ValueError, "one class index per code"),
    (dict(class_names=["a"]), ValueError, "class_names has 1 names"),
    (dict(walk_images=torch.rand(2, 1, 28, 28)), ValueError, "walk_images and walk_labels together"),
    (dict(walk_images=torch.rand(2, 28, 28), walk_labels=torch.zeros(2)), ValueError, "walk_images must be"),
    (dict(walk_images=torch.rand(2, 1, 28, 28), walk_labels=torch.zeros(2), walk_pair=(0, 5)), ValueError,
     "walk_pair"),
    (dict(circle=-1.0), ValueError, "circle must be a positive radius"),
    (dict(max_points=0), ValueError, "max_points"),
    (dict(fallback="figure.png"), TypeError, "matplotlib figure or PNG bytes"),
    (dict(fallback=b"GIF89a"), ValueError, "not a PNG"),
])
def test_bad_input_gets_a_clear_error(ae2, change, error, match):
    args = dict(codes=torch.randn(10, 2), labels=torch.arange(10) % 2, class_names=["a", "b"])
    args.update(change)
    with pytest.raises(error, match=match):
        live.figure(ae2, **args)


def test_models_a_page_cannot_run_are_refused():
    codes, labels = torch.randn(10, 20), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="MLP decoders only"):
        live.figure(build_model("conv-vae"), codes, labels)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        live.figure(build_model(kind="vae", latent_dim=1), codes[:, :1], labels)
    with pytest.raises(ValueError, match="grey-level images"):
        live.figure(build_model(kind="ae", latent_dim=2, image_shape=(3, 28, 28)), codes[:, :2], labels)
    with pytest.raises(TypeError, match="Autoencoder or VAE"):
        live.figure(torch.nn.Linear(2, 784), codes[:, :2], labels)


def test_a_live_figure_of_a_model_with_nan_weights_is_refused(mnist_small):
    from vaelib.evaluation import encode_mean

    model = build_model(kind="ae", latent_dim=2, hidden=(32,))
    codes = encode_mean(model, mnist_small[:200])
    with torch.no_grad():
        model.decoder[0][0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        live.figure(model, codes, torch.zeros(200, dtype=torch.long))
