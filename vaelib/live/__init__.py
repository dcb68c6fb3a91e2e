"""Live figures for the HTML book: a chapter's own decoder, run in the reader's browser (chapters 2, 5, 7).

:func:`figure` returns an object that a notebook displays. Its ``text/html`` is a
``<div class="vae-live">`` that carries the decoder's weights and the latent plane; the book's
``_static/vae-live.js`` finds it when the page loads and decodes the code under the reader's pointer in
plain JavaScript, with no kernel and no network (it works from ``file://`` too). Where that script is
not loaded (Jupyter, or JavaScript turned off) a static image shows instead: a grid of codes over the
plane and the images they decode to. The display bundle's ``image/png`` is the same image.

The export (:func:`export_decoder`) keeps the page small. The decoder's first layer (code to hidden
units, a few thousand weights) stays float32; each larger layer is stored as int8 with one float32
scale per output row, about a quarter of its float32 size. The rounding uses error feedback (the GPTQ
method of Frantar et al., 2022): the rounding error of each weight is passed on to the weights of the
same row not yet rounded, weighted by how the layer's inputs vary over the codes the figure can show,
so that the errors of a row cancel where the figure decodes. The inputs with the most signal are
rounded first. :func:`figure` then measures the int8
decoder against PyTorch's on fresh codes spread over the plane and refuses to build a figure that
differs by more than :data:`MAX_PIXEL_ERROR` in any pixel.

The figure's markup has one source, ``page.html`` in this package, whose class names the page's script
and stylesheet select. The modules: :mod:`~vaelib.live.decoder` (the export), :mod:`~vaelib.live.plane`
(the pad's plane), :mod:`~vaelib.live.drawing` (the static image) and :mod:`~vaelib.live.page` (the
payload, its checks and the display bundle).
"""

from vaelib.live.decoder import FLOAT_LAYER_MAX, decode_exported, export_decoder, quantize_rows, weight_chars
from vaelib.live.drawing import TAB10
from vaelib.live.page import MAX_PIXEL_ERROR, MAX_WEIGHT_CHARS, LiveFigure, figure
from vaelib.live.plane import N_DIRECTIONS

__all__ = ["FLOAT_LAYER_MAX", "MAX_PIXEL_ERROR", "MAX_WEIGHT_CHARS", "N_DIRECTIONS", "TAB10", "LiveFigure",
           "decode_exported", "export_decoder", "figure", "quantize_rows", "weight_chars"]
