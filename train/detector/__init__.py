"""A classical, non-learned detector for Shapes World images: it judges generated images, so it
must not use the model.

Pipeline (`detect`): estimate the background from the image border (one color, or sky over
ground) -> name each pixel far from it with HSV rules (seven hue sectors, darkness for
black) -> connected components per color, dropping small ones and thin color fringes ->
per component, alpha = how far each pixel is from the background towards the component's
core color (its coverage, for antialiased or blurred edges) -> estimate the edge blur ->
fit the shape hypotheses (circle, square, triangle upright or not, star, diamond), each
blurred alike, to the pixels of alpha >= 0.5; the best names the shape, its fit is the score
and its box is the alpha >= 0.25 extent corrected for how that shape's blurred edge lies ->
grow the box of a partly hidden object into the objects in front of it while the template
fits better ("amodal" box).

Known failures (see train/README.md): heavy occlusion (an object cut in two by one in front
is found twice, and a hidden tip or corner may change the shape it looks like), two
touching objects of one color (found as one), and colors outside the hue sectors.
"""

from train.detector.colors import COLOR_NAMES
from train.detector.pipeline import Detection, DetectorConfig, detect

__all__ = ["COLOR_NAMES", "Detection", "DetectorConfig", "detect"]
